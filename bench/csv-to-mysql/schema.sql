-- The csv-to-mysql benchmark's target: csv-to-pg's accounts table in
-- MariaDB's types (bench/csv-to-pg/schema.sql), so bench/csv-to-pg/classes.py's
-- files serve both. Two differences, both MariaDB's: a CHECK may not call
-- CURRENT_DATE (error 1901), so signup_past compares with a fixed date past
-- every good row's; and text compares without regard to case in the
-- default collation, so email_lower compares in utf8mb4_bin.
CREATE TABLE IF NOT EXISTS parents (id bigint PRIMARY KEY) ENGINE=InnoDB;
INSERT INTO parents SELECT seq FROM seq_1_to_1000000
    WHERE NOT EXISTS (SELECT 1 FROM parents LIMIT 1);
DROP TABLE IF EXISTS accounts;
CREATE TABLE accounts (
    id         bigint PRIMARY KEY,
    email      varchar(100) NOT NULL UNIQUE,
    name       varchar(100) NOT NULL,
    age        integer,
    score      double,
    signup     date,
    last_login datetime,
    active     enum('true', 'false'),
    balance    decimal(12,2),
    country    char(2),
    status     varchar(10) NOT NULL CHECK (status IN ('active', 'dormant')),
    points     integer CHECK (points >= 0),
    ref        bigint,
    FOREIGN KEY (ref) REFERENCES parents (id),
    CONSTRAINT signup_past CHECK (signup <= '2026-12-31'),
    CONSTRAINT email_lower CHECK (lower(email) = email COLLATE utf8mb4_bin)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

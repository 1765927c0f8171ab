-- The csv-to-pg benchmark's target: a primary key, a unique index, NOT NULL
-- columns, four CHECK constraints and a foreign key to a 1M-row table (bench/csv-to-pg/classes.py
-- makes a file of bad rows for each). Also the users table of the export
-- benchmarks (bench/lib.sh, pg_users).
DROP TABLE IF EXISTS users;
CREATE TABLE users (
    id         bigint PRIMARY KEY,
    email      varchar(100) NOT NULL UNIQUE,
    name       varchar(100) NOT NULL,
    age        integer,
    score      double precision,
    signup     date,
    last_login timestamp,
    active     boolean,
    balance    numeric(12,2),
    country    char(2)
);
DROP TABLE IF EXISTS accounts;
-- The parents accounts.ref references: made once, kept between runs.
CREATE TABLE IF NOT EXISTS parents (id bigint PRIMARY KEY);
INSERT INTO parents SELECT g FROM generate_series(1, 1000000) g
    WHERE NOT EXISTS (SELECT 1 FROM parents LIMIT 1);
-- users' columns, primary key and unique index, and more constraints
CREATE TABLE accounts (
    LIKE users INCLUDING ALL,
    status     text NOT NULL CHECK (status IN ('active', 'dormant')),
    points     integer CHECK (points >= 0),
    ref        bigint REFERENCES parents,
    CONSTRAINT signup_past CHECK (signup <= CURRENT_DATE),
    CONSTRAINT email_lower CHECK (lower(email) = email)
);

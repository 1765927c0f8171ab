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

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    email      VARCHAR(100) NOT NULL,
    name       VARCHAR(100) NOT NULL,
    age        INTEGER,
    score      REAL,
    signup     DATE,
    last_login TIMESTAMP,
    active     BOOLEAN,
    balance    NUMERIC(12,2),
    country    CHAR(2)
);
CREATE UNIQUE INDEX users_email ON users (email);

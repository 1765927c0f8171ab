-- Users (SQLite and PostgreSQL alike; created by `seed` when missing).
CREATE TABLE IF NOT EXISTS users (
    id         INTEGER PRIMARY KEY,
    email      VARCHAR(120) NOT NULL UNIQUE,
    last_login DATE NOT NULL,
    status     VARCHAR(10) NOT NULL CHECK (status IN ('active', 'dormant')),
    dormant_on DATE                     -- the night the user was switched
);
CREATE INDEX IF NOT EXISTS users_status_login ON users (status, last_login);

-- Target schema of the users-upload example (SQLite and PostgreSQL alike),
-- created by the job's first step when missing. Column types and constraints
-- are the data team's integrity rules: nightshift checks every value against
-- them and rejects what does not fit, naming the file line.
CREATE TABLE IF NOT EXISTS countries (
    code CHAR(2) PRIMARY KEY,
    name TEXT NOT NULL
);
INSERT INTO countries VALUES ('KR', 'Korea'), ('JP', 'Japan'), ('US', 'United States'),
    ('DE', 'Germany'), ('FR', 'France'), ('BR', 'Brazil')
    ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    email       VARCHAR(120) NOT NULL UNIQUE,
    name        VARCHAR(60) NOT NULL,
    age         SMALLINT CHECK (age BETWEEN 0 AND 150),
    signup_date DATE NOT NULL,
    last_login  TIMESTAMP,
    points      INTEGER NOT NULL DEFAULT 0,
    premium     BOOLEAN NOT NULL DEFAULT false,
    balance     NUMERIC(10,2),
    country     CHAR(2) REFERENCES countries (code)
);
CREATE INDEX IF NOT EXISTS users_signup ON users (signup_date);

-- What "publish" records: the month's data is released once checks pass.
CREATE TABLE IF NOT EXISTS publications (
    month        DATE PRIMARY KEY,
    users        INTEGER NOT NULL,
    published_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Points and coupons (SQLite and PostgreSQL alike; created by `seed` and by
-- the settlement job's first step when missing).
CREATE TABLE IF NOT EXISTS point_events (
    event_id INTEGER PRIMARY KEY,
    user_id  INTEGER NOT NULL,
    day      DATE NOT NULL,
    kind     VARCHAR(8) NOT NULL CHECK (kind IN ('earn', 'use', 'expire')),
    points   INTEGER NOT NULL CHECK (points > 0)
);
CREATE TABLE IF NOT EXISTS settlement (
    day     DATE NOT NULL,
    user_id INTEGER NOT NULL,
    earned  INTEGER NOT NULL,
    used    INTEGER NOT NULL,
    expired INTEGER NOT NULL,
    PRIMARY KEY (day, user_id)
);
CREATE TABLE IF NOT EXISTS coupons (
    code        VARCHAR(20) PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    expires     DATE NOT NULL,
    status      VARCHAR(10) NOT NULL CHECK (status IN ('active', 'exchanged')),
    replaced_by VARCHAR(20)
);

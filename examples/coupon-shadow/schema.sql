-- Coupon requests, what the legacy stored procedure issued, and what the new
-- issuing logic issues (SQLite and PostgreSQL alike).
CREATE TABLE IF NOT EXISTS coupon_requests (
    req_id  INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    amount  NUMERIC(10,2) NOT NULL,
    tier    VARCHAR(10) NOT NULL
);
CREATE TABLE IF NOT EXISTS coupons_old (
    req_id    INTEGER PRIMARY KEY,
    coupon_no VARCHAR(20) NOT NULL UNIQUE,
    discount  NUMERIC(10,2) NOT NULL
);
CREATE TABLE IF NOT EXISTS coupons_new (
    req_id    INTEGER PRIMARY KEY,
    coupon_no VARCHAR(20) NOT NULL UNIQUE,
    discount  NUMERIC(10,2) NOT NULL
);

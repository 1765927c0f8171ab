-- The catalogue and the derived filter table product queries join
-- (SQLite, PostgreSQL and MariaDB/MySQL alike; created by the job's first
-- step; on MySQL a BOOLEAN is a TINYINT(1), which the writer fills from the
-- CSV's true/false).
CREATE TABLE IF NOT EXISTS goods (
    goods_no          INTEGER PRIMARY KEY,
    shop_no           INTEGER NOT NULL,
    parent_goods_no   INTEGER REFERENCES goods (goods_no),
    kind              VARCHAR(10) NOT NULL CHECK (kind IN ('album', 'version', 'bonus')),
    shipping_discount BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS goods_filter (
    shop_no     INTEGER NOT NULL,
    goods_no    INTEGER NOT NULL,
    filter_type VARCHAR(30) NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (goods_no, filter_type)
);

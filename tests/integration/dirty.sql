-- Target of the integration tests' dirty loads (see gen_dirty.py).
CREATE TABLE parent (id INTEGER PRIMARY KEY);
INSERT INTO parent VALUES (1), (2), (3), (4), (5);
CREATE TABLE items (
    id    INTEGER PRIMARY KEY,
    email VARCHAR(40) NOT NULL UNIQUE,
    name  TEXT,
    qty   INTEGER CHECK (qty >= 0),
    price NUMERIC(8,2),
    day   DATE NOT NULL,
    ts    TIMESTAMP,
    flag  BOOLEAN,
    ref   INTEGER REFERENCES parent (id)
);
CREATE INDEX items_day ON items (day);

-- tests/integration/dirty.sql for MariaDB/MySQL (see gen_dirty.py): the same
-- columns, in MySQL's types; a boolean is an ENUM of the words the good rows use.
CREATE TABLE parent (id INTEGER PRIMARY KEY) ENGINE=InnoDB;
INSERT INTO parent VALUES (1), (2), (3), (4), (5);
CREATE TABLE items (
    id    INTEGER PRIMARY KEY,
    email VARCHAR(40) NOT NULL UNIQUE,
    name  TEXT,
    qty   INTEGER CHECK (qty >= 0),
    price DECIMAL(8,2),
    day   DATE NOT NULL,
    ts    DATETIME,
    flag  ENUM('true', 'false', 't', 'f', 'yes', 'no'),
    ref   INTEGER REFERENCES parent (id),
    FOREIGN KEY (ref) REFERENCES parent (id)
) ENGINE=InnoDB;
CREATE INDEX items_day ON items (day);

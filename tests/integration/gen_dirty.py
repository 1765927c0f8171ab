#!/usr/bin/env python3
"""Writes a CSV with bad rows of every class of docs/jobs.md, "Reader `csv`" and "Rejects file" at known
lines, and what a correct load must give.

usage: gen_dirty.py ROWS OUT.csv EXPECTED_REJECTS.txt EXPECTED_IDS.txt [BADEVERY]

EXPECTED_REJECTS lists "line code" for every bad record; EXPECTED_IDS lists
the ids of the good rows. The schema is tests/integration/dirty.sql. Tricky
valid rows (quoted newlines, CRLF, quoted delimiters, "" vs NULL) make record
numbers and line numbers differ.
"""
import random
import sys

rows, out, rej_path, ids_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
every = int(sys.argv[5]) if len(sys.argv) > 5 else 37
random.seed(rows)

CLASSES = [
    ("NS_ENCODING", lambda f: f.__setitem__(2, "bad\udcffname")),
    ("NS_FIELD_COUNT", lambda f: f.append("extra")),
    ("NS_FIELD_COUNT", lambda f: f.pop()),
    ("NS_CSV_QUOTE", lambda f: f.__setitem__(2, 'sto"ray')),
    ("22P02", lambda f: f.__setitem__(3, "12x")),
    ("22007", lambda f: f.__setitem__(5, "2025-02-30")),
    ("22007", lambda f: f.__setitem__(6, "noon")),
    ("22P02", lambda f: f.__setitem__(7, "perhaps")),
    ("22003", lambda f: f.__setitem__(4, "1234567.00")),
    ("22001", lambda f: f.__setitem__(1, "x" * 41 + "@e.com")),
    ("23502", lambda f: f.__setitem__(1, "")),
    ("23514", lambda f: f.__setitem__(3, "-5")),
    ("23505", lambda f: f.__setitem__(1, "u1@e.com")),      # duplicate UNIQUE email
    ("23505", lambda f: f.__setitem__(0, "1")),              # duplicate primary key
    ("23503", lambda f: f.__setitem__(8, "999")),            # no such parent
]

def good(i):
    name = f"name {i}"
    r = random.random()
    if r < 0.05:
        name = f'"line one\nline two {i}"'
    elif r < 0.10:
        name = f'"comma, and ""quotes"" {i}"'
    elif r < 0.13:
        name = '""'                                   # empty string, not NULL
    return [str(i), f"u{i}@e.com", name, str(random.randint(0, 1000)),
            f"{random.randint(0, 99999)}.{random.randint(0, 99):02d}",
            f"2025-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}",
            "" if r > 0.9 else f"2025-01-01 {random.randint(0, 23):02d}:00:00",
            random.choice(["true", "false", "t", "f", "yes", "no"]),
            str(random.randint(1, 5))]

line = 1
data = [b"id,email,name,qty,price,day,ts,flag,ref\n"]
rejects, ids = [], []
for i in range(1, rows + 1):
    f = good(i)
    code = None
    if i > 1 and i % every == 0:
        code, mutate = CLASSES[(i // every) % len(CLASSES)]
        mutate(f)
    text = ",".join(f).encode("utf-8", "surrogateescape")
    eol = b"\r\n" if i % 3 == 0 else b"\n"
    data.append(text + eol)
    line += 1
    if code:
        rejects.append((line, code))
    else:
        ids.append(i)
    line += text.count(b"\n")
open(out, "wb").write(b"".join(data))
open(rej_path, "w").write("".join(f"{l} {c}\n" for l, c in rejects))
open(ids_path, "w").write("".join(f"{i}\n" for i in ids))

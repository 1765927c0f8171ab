#!/usr/bin/env python3
"""classes.py CLEAN.csv OUTDIR - the files of the csv-to-pg benchmark.

From the clean 10-column users file (gen.py): OUTDIR/clean.csv, the same rows
with three more columns (status, points, ref) for the accounts table of
schema.sql; then, at 0.1% and at 1% bad rows, one file per class of bad
row the contract names (invalid UTF-8, field count, type, NOT NULL, CHECK,
UNIQUE, primary key, foreign key; CHECKs of four kinds: an IN list, a range,
a date against CURRENT_DATE, a function of the value) and one with every class
in equal shares: CLASS-RATE.csv. The bad rows are at random lines (seeded),
not at any period, and every class is generated the same way whatever the
writer does with it. Each file's bad line numbers go to FILE.bad; for the
existing-row load, OUTDIR/existing-5.csv holds the 5% of the rows that are
put in the table before the load (the load itself reads clean.csv). Last,
for a table with a trigger that refuses rows (trigger.sql): the trigger's
class alone and all thirteen mixed, trigger-RATE.csv and trigger-mixed-RATE.csv.
"""
import os
import random
import sys

src, outdir = sys.argv[1], sys.argv[2]
os.makedirs(outdir, exist_ok=True)
with open(src, encoding="utf-8") as f:
    header = f.readline().rstrip("\n")
    base = [line.rstrip("\n").split(",") for line in f]
n = len(base)
rnd = random.Random(11)
# status and points have CHECKs; ref references parents(id) (1..PARENTS).
PARENTS = 1000000
rows = [r + [rnd.choice(("active", "dormant")), str(rnd.randint(0, 5000)),
             str(rnd.randint(1, PARENTS))] for r in base]
ID, EMAIL, NAME, AGE, SIGNUP, COUNTRY, STATUS, POINTS, REF = 0, 1, 2, 3, 5, 9, 10, 11, 12


def earlier_good(i, bad):
    """A row before index i that the file keeps good (so a copy of its key collides)."""
    while True:
        j = rnd.randrange(0, i)
        if j not in bad:
            return rows[j]


# Each class: a function of (fields, index, the set of bad indexes) -> fields.
def set_field(k, v):
    def f(r, i, bad):
        r = list(r)
        r[k] = v
        return r
    return f


def dup_of(k):
    def f(r, i, bad):
        r = list(r)
        r[k] = earlier_good(i, bad)[k]
        return r
    return f


CLASSES = {
    "utf8": set_field(NAME, "bad\udcffname"),          # invalid UTF-8
    "fields": lambda r, i, bad: r[:-1],                  # a field too few
    "int": set_field(AGE, "12x"),                        # integer type
    "date": set_field(SIGNUP, "2025-02-30"),             # date type
    "notnull": set_field(EMAIL, ""),                     # NOT NULL (unquoted empty is NULL)
    "check-status": set_field(STATUS, "deleted"),        # CHECK status IN (...)
    "check-points": set_field(POINTS, "-5"),             # CHECK points >= 0
    "check-date": set_field(SIGNUP, "2031-05-17"),       # CHECK signup <= CURRENT_DATE
    "check-lower": lambda r, i, bad: r[:EMAIL] + [r[EMAIL].upper()] + r[EMAIL + 1:],  # CHECK lower(email) = email
    "unique": dup_of(EMAIL),                             # UNIQUE, an earlier row's email
    "pk": dup_of(ID),                                    # primary key, an earlier row's id
    # a foreign key: a parent that does not exist, a different one each time
    "fk": lambda r, i, bad: r[:REF] + [str(PARENTS + 1 + rnd.randrange(10**9))],
}


def write(path, lines, bad_lines):
    with open(path, "wb") as f:
        f.write((header + ",status,points,ref\n").encode())
        for fields in lines:
            f.write((",".join(fields) + "\n").encode("utf-8", "surrogateescape"))
    with open(path + ".bad", "w") as f:
        f.write("".join(f"{b}\n" for b in sorted(bad_lines)))


write(os.path.join(outdir, "clean.csv"), rows, [])
for rate, tag in ((0.001, "0.1"), (0.01, "1")):
    count = int(n * rate)
    names = list(CLASSES) + ["mixed"]
    for name in names:
        # The first rows stay good, so every key class has an earlier row to copy.
        at = sorted(rnd.sample(range(100, n), count))
        bad = set(at)
        kinds = [name] * count if name != "mixed" else [list(CLASSES)[k % len(CLASSES)] for k in range(count)]
        rnd.shuffle(kinds)
        out = list(rows)
        for i, kind in zip(at, kinds):
            out[i] = CLASSES[kind](rows[i], i, bad)
        write(os.path.join(outdir, f"{name}-{tag}.csv"), out, [i + 2 for i in at])
# Rows already in the table: 5% of the file's rows, at random, put there before
# the load (a re-run after a partial manual load); the load of every row
# already there (a re-run of a completed load) preloads clean.csv itself.
pre = sorted(rnd.sample(range(n), n // 20))
write(os.path.join(outdir, "existing-5.csv"), [rows[i] for i in pre], [i + 2 for i in pre])
# A table with a trigger that refuses rows (trigger.sql), where the writer
# holds nothing back: the trigger's class alone, and with every class.
TRIGGER = set_field(NAME, "refused by trigger")
for rate, tag in ((0.001, "0.1"), (0.01, "1")):
    count = int(n * rate)
    every = list(CLASSES) + ["trigger"]
    for name in ("trigger", "trigger-mixed"):
        at = sorted(rnd.sample(range(100, n), count))
        bad = set(at)
        kinds = [every[k % len(every)] for k in range(count)] if name != "trigger" else ["trigger"] * count
        rnd.shuffle(kinds)
        out = list(rows)
        for i, kind in zip(at, kinds):
            out[i] = (TRIGGER if kind == "trigger" else CLASSES[kind])(rows[i], i, bad)
        write(os.path.join(outdir, f"{name}-{tag}.csv"), out, [i + 2 for i in at])

#!/usr/bin/env python3
"""dirty.py CLEAN.csv OUT.csv - the clean bench file with 0.1% bad rows of
every class (field count, encoding, quoting, types, lengths, NOT NULL, UNIQUE,
primary key). Writes OUT's bad line numbers to OUT.bad."""
import os
import sys

src, out = sys.argv[1], sys.argv[2]
bad = []
mutations = [
    lambda f: f + ["extra"],                       # too many fields
    lambda f: f[:-2],                              # too few
    lambda f: f[:2] + ["bad\udcffname"] + f[3:],   # invalid UTF-8
    lambda f: f[:2] + ['st"ray'] + f[3:],          # quote in an unquoted field
    lambda f: f[:3] + ["12x"] + f[4:],             # integer
    lambda f: f[:5] + ["2025-02-30"] + f[6:],      # date
    lambda f: f[:7] + ["maybe"] + f[8:],           # boolean
    lambda f: f[:8] + ["12345678901.00"] + f[9:],  # numeric overflow
    lambda f: f[:2] + ["x" * 101] + f[3:],         # too long
    lambda f: f[:1] + [""] + f[2:],                # NOT NULL
    lambda f: f[:1] + ["user1@example.com"] + f[2:],  # UNIQUE
    lambda f: ["1"] + f[1:],                       # primary key
]
with open(src, "rb") as fi, open(out, "wb") as fo:
    fo.write(fi.readline())
    for n, line in enumerate(fi, start=2):
        if n % 1000 == 500:
            f = line.rstrip(b"\n").decode().split(",")
            f = mutations[(n // 1000) % len(mutations)](f)
            line = ",".join(f).encode("utf-8", "surrogateescape") + b"\n"
            bad.append(n)
        fo.write(line)
with open(out + ".bad", "w") as f:
    f.write("".join(f"{n}\n" for n in bad))

#!/usr/bin/env python3
"""Generates users.csv: a few thousand users with bad rows of every kind.

Run once; the output is committed so the demo needs no Python. Deterministic.
"""
import random

random.seed(7)
COUNTRIES = ["KR", "JP", "US", "DE", "FR", "BR"]
NAMES = ["Kim", "Lee", "Park", "Sato", "Smith", "Müller", "Dubois", "Silva", "Choi", "Tanaka"]

def good(i):
    name = f"{random.choice(NAMES)} {i}"
    if i % 97 == 0:
        name = f'"{name}, Jr."'                      # quoted delimiter
    if i % 151 == 0:
        name = f'"{random.choice(NAMES)} ""The Great"" {i}"'  # doubled quotes
    if i % 389 == 0:
        name = f'"{random.choice(NAMES)}\nsecond line {i}"'    # quoted newline
    age = "" if i % 13 == 0 else str(random.randint(18, 90))    # NULL age
    login = "" if i % 7 == 0 else f"2026-{random.randint(1,10):02d}-{random.randint(1,28):02d} {random.randint(0,23):02d}:{random.randint(0,59):02d}:00"
    return [str(i), f"user{i}@example.com", name, age,
            f"20{random.randint(15,25)}-{random.randint(1,12):02d}-{random.randint(1,28):02d}",
            login, str(random.randint(0, 50000)), random.choice(["true", "false", "t", "f"]),
            f"{random.randint(0, 99999)}.{random.randint(0,99):02d}", random.choice(COUNTRIES)]

BAD = {
    "bad integer":       lambda r: r.__setitem__(6, "12x"),
    "bad date":          lambda r: r.__setitem__(4, "2024-02-30"),
    "too long":          lambda r: r.__setitem__(2, "X" * 61),
    "missing email":     lambda r: r.__setitem__(1, ""),
    "duplicate email":   lambda r: r.__setitem__(1, "user1@example.com"),
    "check violated":    lambda r: r.__setitem__(3, "200"),
    "unknown country":   lambda r: r.__setitem__(9, "ZZ"),
    "bad boolean":       lambda r: r.__setitem__(7, "maybe"),
    "numeric overflow":  lambda r: r.__setitem__(8, "123456789.00"),
    "bad timestamp":     lambda r: r.__setitem__(5, "yesterday noon"),
    "smallint range":    lambda r: r.__setitem__(3, "40000"),
}

lines = [b"id,email,name,age,signup_date,last_login,points,premium,balance,country"]
kinds = list(BAD)
for i in range(1, 4001):
    r = good(i)
    if i % 50 == 0 and i > 1:
        k = kinds[(i // 50) % len(kinds)]
        BAD[k](r)
    text = ",".join(r).encode()
    if i % 50 == 25:
        j = (i // 50) % 4
        if j == 0:
            text += b",extra"                          # too many fields
        elif j == 1:
            text = text.rsplit(b",", 2)[0]             # too few fields
        elif j == 2:
            text = text.replace(b"@example", b"@exa\xffmple")  # invalid UTF-8
        else:
            text = text.replace(b"user", b'us"er', 1)  # stray quote
    if i == 1234:
        text = ",".join(good(17)).encode()             # duplicate primary key (id 17)
    lines.append(text)
open("users.csv", "wb").write(b"\r\n".join(lines[:2000]) + b"\r\n" + b"\n".join(lines[2000:]) + b"\n")

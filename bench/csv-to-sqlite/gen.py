#!/usr/bin/env python3
"""gen.py ROWS OUT.csv - a clean 10-column CSV for the load benchmarks."""
import random
import sys

rows, out = int(sys.argv[1]), sys.argv[2]
random.seed(1)
countries = ["KR", "JP", "US", "DE", "FR", "BR", "IN", "GB"]
with open(out, "w", newline="") as f:
    f.write("id,email,name,age,score,signup,last_login,active,balance,country\n")
    for i in range(1, rows + 1):
        f.write(f"{i},user{i}@example.com,Name {random.randint(1, 99999)} {i},"
                f"{random.randint(18, 90)},{random.random() * 100:.4f},"
                f"20{random.randint(10, 25)}-{random.randint(1, 12):02d}-{random.randint(1, 28):02d},"
                f"2026-{random.randint(1, 10):02d}-{random.randint(1, 28):02d} "
                f"{random.randint(0, 23):02d}:{random.randint(0, 59):02d}:00,"
                f"{random.choice(('true', 'false'))},{random.randint(0, 9999999)}.{random.randint(0, 99):02d},"
                f"{random.choice(countries)}\n")

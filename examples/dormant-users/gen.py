#!/usr/bin/env python3
"""Makes users.csv: 12,000 active users; about two in three last logged in
long ago (2024), the others recently. Seeded."""
import random

random.seed(3)
with open("users.csv", "w") as f:
    f.write("id,email,last_login,status\n")
    for i in range(1, 12001):
        old = random.random() < 0.66
        day = f"2024-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}" if old else \
              f"2026-{random.randint(1, 10):02d}-{random.randint(1, 28):02d}"
        f.write(f"{i},user{i}@example.com,{day},active\n")

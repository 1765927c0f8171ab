#!/usr/bin/env python3
"""Makes events.csv (earned, used and expired points over three days) and
coupons.csv (coupons, some expiring before the settled days). Seeded."""
import random

random.seed(7)
with open("events.csv", "w") as f:
    f.write("event_id,user_id,day,kind,points\n")
    n = 0
    for day in ("2026-11-19", "2026-11-20", "2026-11-21"):
        for _ in range(2000):
            n += 1
            kind = random.choices(["earn", "use", "expire"], [6, 3, 1])[0]
            f.write(f"{n},{random.randint(1, 300)},{day},{kind},{random.randint(1, 500)}\n")
with open("coupons.csv", "w") as f:
    f.write("code,user_id,expires,status\n")
    for i in range(1, 401):
        day = 10 + i % 20  # expiring 2026-11-10 .. 2026-11-29
        f.write(f"C{i:05d},{random.randint(1, 300)},2026-11-{day:02d},active\n")

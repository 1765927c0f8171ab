#!/usr/bin/env python3
"""Makes requests.csv (coupon requests) and coupons_old.csv (what the legacy
stored procedure issued for them). The legacy procedure truncated the
discount to cents where the new logic rounds, and it skipped 'trial' users;
amounts whose discount falls exactly on half a cent are avoided, so rounding
is the same in every database. Seeded."""
import random
from decimal import Decimal, ROUND_DOWN, ROUND_HALF_UP

random.seed(11)
RATE = {"gold": Decimal("0.10"), "silver": Decimal("0.07"), "bronze": Decimal("0.03"),
        "trial": Decimal("0.01")}
reqs, old = [], []
n = 0
while len(reqs) < 2000:
    amount = Decimal(random.randint(100, 99999)) / 100
    tier = random.choices(list(RATE), [2, 3, 5, 1])[0]
    exact = amount * RATE[tier]
    if (exact * 1000) % 10 == 5 and (exact * 10000) % 10 == 0:
        continue  # exactly half a cent: rounding would depend on binary floats
    n += 1
    reqs.append((n, random.randint(1, 500), amount, tier))
    if tier != "trial":
        old.append((n, f"C{n:06d}", exact.quantize(Decimal("0.01"), ROUND_DOWN)))
with open("requests.csv", "w") as f:
    f.write("req_id,user_id,amount,tier\n")
    for r in reqs:
        f.write(f"{r[0]},{r[1]},{r[2]},{r[3]}\n")
with open("coupons_old.csv", "w") as f:
    f.write("req_id,coupon_no,discount\n")
    for r in old:
        f.write(f"{r[0]},{r[1]},{r[2]}\n")
# What the compare must find, for the example's test.
with open("expected.txt", "w") as f:
    for r in reqs:
        exact = r[2] * RATE[r[3]]
        new = exact.quantize(Decimal("0.01"), ROUND_HALF_UP)
        if r[3] == "trial":
            f.write(f"only_right {r[0]}\n")
        elif new != exact.quantize(Decimal("0.01"), ROUND_DOWN):
            f.write(f"different {r[0]}\n")

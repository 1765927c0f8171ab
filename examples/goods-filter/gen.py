#!/usr/bin/env python3
"""Makes goods.csv: a catalogue of albums, their versions and bonus items
(parent_goods_no links each to its parent; parents come first). A few items
anywhere in a tree are shipping-discounted. Deterministic (seeded)."""
import random

random.seed(42)
rows, no = [], 0
for album in range(300):
    no += 1
    a = no
    shop = 1 + album % 5
    rows.append((a, shop, "", "album", random.random() < 0.05))
    for _ in range(random.randint(1, 3)):
        no += 1
        v = no
        rows.append((v, shop, a, "version", random.random() < 0.05))
        for _ in range(random.randint(0, 2)):
            no += 1
            rows.append((no, shop, v, "bonus", random.random() < 0.08))
with open("goods.csv", "w") as f:
    f.write("goods_no,shop_no,parent_goods_no,kind,shipping_discount\n")
    for r in rows:
        f.write(f"{r[0]},{r[1]},{r[2]},{r[3]},{'true' if r[4] else 'false'}\n")

#!/usr/bin/env bash
# The goods-filter example (docs/scenarios.md §2, whose DDL the team wrote for
# MySQL) on MariaDB (fixture "mysql"): its own run.sh with TARGET_URL a
# MariaDB database; the same albums as the data says; the rebuild and the
# assertion run on MariaDB; the BOOLEAN column (TINYINT(1)) filled from the
# CSV's true/false.
source "$(dirname "$0")/lib.sh"
cp -r "$NS_SRC/examples" ex
rm -rf ex/*/out
cd ex/goods-filter
export TARGET_URL NIGHTSHIFT_REPOSITORY=sqlite:out/nightshift.db
TARGET_URL=$(my_db ns_goods)
./run.sh "$NS" > "$T/goods.out" 2>&1 || { cat "$T/goods.out" >&2; fail "goods-filter: run.sh failed"; }
want=$(python3 - <<'PY'
import csv
rows = list(csv.DictReader(open("goods.csv")))
parent = {r["goods_no"]: r["parent_goods_no"] for r in rows}
def root(g):
    while parent[g]:
        g = parent[g]
    return g
print(len({root(r["goods_no"]) for r in rows if r["shipping_discount"] == "true"}))
PY
)
[ "$want" -gt 0 ] || fail "the example's data has no discounted album"
assert_eq "$(my_sql ns_goods -e "SELECT count(*) FROM goods_filter")" "$want" "goods-filter: discounted albums"
assert_eq "$(my_sql ns_goods -e "SELECT count(*) FROM goods_filter f JOIN goods g ON g.goods_no = f.goods_no WHERE g.parent_goods_no IS NULL")" \
    "$want" "goods-filter: only albums"
assert_eq "$(my_sql ns_goods -e "SELECT count(*) FROM goods WHERE shipping_discount")" \
    "$(grep -c ',true$' goods.csv)" "goods: truth values"
for line in "goods_filter rebuilt with $want rows" "goods_filter: $want albums are shipping-discounted"; do
    grep -qF "$line" "$T/goods.out" || { cat "$T/goods.out" >&2; fail "goods-filter: output lacks: $line"; }
done
echo "goods-filter on MariaDB: ok ($want albums)"

#!/usr/bin/env bash
# The five examples of examples/ (docs/scenarios.md), each run by its own script
# and its results checked against what the bundled data says they must be:
# on SQLite here; on PostgreSQL when run by test_examples_pg.sh, with the job
# repository in the same database (one transaction for rows and records).
source "$(dirname "$0")/lib.sh"
cp -r "$NS_SRC/examples" ex
rm -rf ex/*/out
unset NIGHTSHIFT_REPOSITORY # each example keeps its own, set by example()
target() { # target NAME: where example NAME works
    if [ -n "${EXAMPLES_PG:-}" ]; then pg_db "ns_ex_${1//-/_}"; else echo "sqlite:out/$1.db"; fi
}
q() { db_sql "$TARGET_URL" "$1"; } # (in an example's directory)
example() { # example NAME SCRIPT: runs it, output in NAME.out, stays in its directory
    cd "$T/ex/$1"
    export TARGET_URL
    TARGET_URL=$(target "$1")
    export REPO=sqlite:out/nightshift.db NIGHTSHIFT_REPOSITORY
    [ -n "${EXAMPLES_PG:-}" ] && REPO=$TARGET_URL
    NIGHTSHIFT_REPOSITORY=$REPO
    "./$2" "$NS" > "$T/$1.out" 2>&1 || { cat "$T/$1.out" >&2; fail "$1: $2 failed"; }
}
has() { grep -qF -- "$2" "$T/$1.out" || { cat "$T/$1.out" >&2; fail "$1: output lacks: $2"; }; }

# 1. users-upload: load with rejects, the check passes, publish runs; the same
# month again is refused; a month whose data fails the check publishes nothing.
example users-upload demo.sh
has users-upload "rows in users: 3839"
has users-upload "published: 2026-11-01|3839"
has users-upload "exit status 4"
# its Slack notification, received by ns-receiver: the run rejected rows
has users-upload "nightshift: job users-upload completed_with_skips"
assert_eq "$(grep -c . out/slack.jsonl)" 1 "users-upload: one Slack message"
assert_eq "$(($(wc -l < out/rejects/users-upload-1.csv) - 1))" 161 "users-upload: rejects"
printf 'id,email,name,age,signup_date,last_login,points,premium,balance,country\n9001,late@example.com,Late,30,2026-12-05,2026-12-06 10:00:00,1,false,0,KR\n9002,odd@example.com,Odd,30,2026-10-05,2026-09-01 10:00:00,1,false,0,KR\n' > bad-month.csv
expect_exit 1 "$NS" run job.yaml file=bad-month.csv month=2026-12-01
expect_err "step check: assertion failed: 2 rows, e.g. (id=9001, email=late@example.com"
assert_eq "$(q "SELECT count(*) FROM publications")" 1 "users-upload: nothing published for a failed check"
# Run by hand from its folder with another repository (./nightshift.db, the
# default), as a new user would (issue 9): the demo's rejects file has the
# same name, and must not be overwritten: the run refuses, naming its writer.
if [ -z "${EXAMPLES_PG:-}" ]; then
    cp out/rejects/users-upload-1.csv demo-rejects.csv
    expect_exit 1 env -u NIGHTSHIFT_REPOSITORY TARGET_URL=sqlite:out/by-hand.db \
        "$NS" run job.yaml file=users.csv month=2026-11-01
    expect_err "already holds what execution 1 of another repository"
    cmp -s demo-rejects.csv out/rejects/users-upload-1.csv || fail "users-upload: the demo's rejects file was overwritten"
fi
echo "users-upload: ok"

# 2. goods-filter: the albums whose subtree holds a shipping discount.
example goods-filter run.sh
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
assert_eq "$(q "SELECT count(*) FROM goods_filter")" "$want" "goods-filter: discounted albums"
assert_eq "$(q "SELECT count(*) FROM goods_filter f JOIN goods g ON g.goods_no = f.goods_no WHERE g.parent_goods_no IS NULL")" \
    "$want" "goods-filter: only albums"
has goods-filter "goods_filter rebuilt with $want rows"
echo "goods-filter: ok ($want albums)"

# 3. point-settlement: sums per day as the events say; coupons exchanged once;
# a day twice refused; a crash in the middle of a day, restarted.
example point-settlement run.sh
python3 - > want.txt <<'PY'
import csv, collections
t = collections.defaultdict(lambda: [set(), 0, 0, 0])
for r in csv.DictReader(open("events.csv")):
    if r["day"] in ("2026-11-20", "2026-11-21"):
        d = t[r["day"]]; d[0].add(r["user_id"])
        d[{"earn": 1, "use": 2, "expire": 3}[r["kind"]]] += int(r["points"])
for day in sorted(t):
    d = t[day]; print(f"{day}|{len(d[0])}|{d[1]}|{d[2]}|{d[3]}")
PY
assert_eq "$(q "SELECT day, count(*), sum(earned), sum(used), sum(expired) FROM settlement GROUP BY day ORDER BY day")" \
    "$(cat want.txt)" "point-settlement: settlement per day"
assert_eq "$(q "SELECT count(*) FROM coupons WHERE status = 'exchanged'")" 220 "point-settlement: exchanged"
assert_eq "$(q "SELECT count(*) FROM coupons WHERE code LIKE 'R%' AND expires = '2027-11-20'")" 200 "point-settlement: new coupons"
has point-settlement "already completed by execution 2"
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=2 expect_exit 98 "$NS" run job.yaml day=2026-11-25
expect_exit 0 "$NS" restart 4
expect_err "step exchange: resuming after chunk 1"
assert_eq "$(q "SELECT count(*), count(DISTINCT code) FROM coupons WHERE code LIKE 'R%'")" "300|300" \
    "point-settlement: exchanged once across a crash"
echo "point-settlement: ok"

# 4. dormant-users: every user inactive since the cutoff switched, no other.
example dormant-users run.sh
want=$(python3 -c "
import csv; print(sum(1 for r in csv.DictReader(open('users.csv')) if r['last_login'] < '2025-11-21'))")
assert_eq "$(q "SELECT count(*) FROM users WHERE status = 'dormant'")" "$want" "dormant-users: switched"
assert_eq "$(q "SELECT count(*) FROM users WHERE status = 'dormant' AND last_login >= '2025-11-21'")" 0 \
    "dormant-users: switched wrongly"
# ... and the third party heard of each of them once (ns-receiver's record:
# a repeat is answered 409), with no secret anywhere but its header
python3 - out/received.jsonl "$want" <<'PY' || fail "dormant-users: the third party's record"
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
ok = [r for r in rs if r["status"] == 200]
assert len(ok) == int(sys.argv[2]) == len({r["key"] for r in ok}), (len(ok), sys.argv[2])
assert {r["path"] for r in ok} == {f"/users/{json.loads(r['body'])['id']}/dormant" for r in ok}
assert all(r["headers"]["Authorization"].startswith("Bearer ") for r in rs)
PY
has dormant-users "the next night switches no one new"
echo "dormant-users: ok ($want users)"

# 5. coupon-shadow: exactly the differences gen.py knows of.
example coupon-shadow run.sh
diff=$(ls out/diff-*.csv | tail -n 1)
tail -n +2 "$diff" | cut -d, -f1,2 | tr ',' ' ' | sort > got.txt
sort expected.txt > want.txt
diff -q want.txt got.txt > /dev/null || fail "coupon-shadow: differences ($(wc -l < got.txt) found, $(wc -l < want.txt) expected)"
has coupon-shadow "COMPLETED"
assert_eq "$(show_field 2 "['exit_code']")" COMPLETED_WITH_DIFFERENCES "coupon-shadow: exit code"
echo "coupon-shadow: ok ($(wc -l < want.txt) differences)"
echo "examples: ok ($([ -n "${EXAMPLES_PG:-}" ] && echo PostgreSQL || echo SQLite))"

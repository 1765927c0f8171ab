#!/usr/bin/env bash
# The compare step (shadowing, docs/scenarios.md §5): two queries, possibly on two
# databases, matched by key; every row on one side only or differing in a
# compared column is written out (CSV or table) and the step's exit code says
# COMPLETED_WITH_DIFFERENCES. Numbers compare by value (10.5 = 10.50), truth
# values alike (t = 1); a key that is not unique or a side out of order is an
# error, not a wrong answer. With COMPARE_PG (test_compare_pg.sh) the right
# side and the table output live in PostgreSQL, and 200,000 rows are compared
# across the two databases.
source "$(dirname "$0")/lib.sh"
export OLD="sqlite:$T/old.db" NEW="sqlite:$T/new.db"
[ -n "${COMPARE_PG:-}" ] && NEW=$(pg_db ns_compare)
new_sql() { db_sql "$NEW" "$1"; }
sqlite3 "$T/old.db" "CREATE TABLE coupon (no text PRIMARY KEY, user_id integer, amount numeric(10,2), used boolean);
INSERT INTO coupon VALUES ('A1', 1, 10.5, 1), ('A2', 2, 20, 0), ('A3', 3, 30, 1), ('A10', 4, 5, 0), ('B', NULL, 1, 0);"
new_sql "CREATE TABLE coupon (no text PRIMARY KEY, user_id integer, amount numeric(10,2), used boolean)"
new_sql "INSERT INTO coupon VALUES ('A1', 1, 10.50, true), ('A2', 2, 21, false), ('A4', 4, 40, true), ('A10', 4, 5, true), ('B', NULL, 1, false)"
job() { # job FILE [OUTPUT-YAML] [ON-YAML]
    cat > "$1" <<EOF
job: ${1%.yaml}
connections:
  old: "\${env.OLD}"
  new: "\${env.NEW}"
steps:
  - name: shadow
    compare:
      left: {connection: old, query: "SELECT no, user_id, amount, used FROM coupon"}
      right: {connection: new, query: "SELECT no, user_id, amount, used FROM coupon"}
      key: [no]
      ${2:+output: $2}
    ${3:+on: $3}
EOF
}

# CSV: exactly the differences, in key order (byte order of the key's text).
job csv.yaml diff.csv
expect_exit 0 "$NS" run csv.yaml
expect_err "4 differences (1 only left, 1 only right, 2 different) in 5 left and 5 right rows (see diff.csv)"
cat > want.csv <<'EOF'
kind,no,columns,left_values,right_values
different,A10,used,used=0,used=VTRUE
different,A2,amount,amount=20,amount=21.00
only_left,A3,,user_id=3; amount=30; used=1,
only_right,A4,,,user_id=4; amount=40.00; used=VTRUE
EOF
if [ -n "${COMPARE_PG:-}" ]; then sed -i 's/VTRUE/t/' want.csv; else sed -i 's/VTRUE/1/; s/amount=21.00/amount=21/; s/amount=40.00/amount=40/' want.csv; fi
diff -u want.csv diff.csv >&2 || fail "differences written"
assert_eq "$(show_field 1 "['exit_code']")" COMPLETED_WITH_DIFFERENCES "job exit code"
assert_eq "$(show_field 1 "['steps'][0]['read_count']")" 10 "rows read (both sides)"
assert_eq "$(show_field 1 "['steps'][0]['write_count']")" 4 "differences counted"

# Differences can fail the job through the flow; no differences: COMPLETED.
job strict.yaml strict.csv "{COMPLETED_WITH_DIFFERENCES: fail}"
expect_exit 1 "$NS" run strict.yaml
sqlite3 "$T/old.db" "CREATE TABLE same AS SELECT * FROM coupon"
cat > same.yaml <<'EOF'
job: same
connections:
  old: "${env.OLD}"
steps:
  - name: shadow
    compare:
      left: {connection: old, query: "SELECT * FROM coupon"}
      right: {connection: old, query: "SELECT * FROM same"}
      key: [no]
      output: same.csv
EOF
expect_exit 0 "$NS" run same.yaml
assert_eq "$(show_field 3 "['exit_code']")" COMPLETED "identical sides"
assert_eq "$(cat same.csv)" "kind,no,columns,left_values,right_values" "no differences, a header"

# Into a table (created when missing), with the execution's id.
job table.yaml "{table: {connection: new, name: coupon_diff}}"
expect_exit 0 "$NS" run table.yaml
assert_eq "$(new_sql "SELECT execution_id, kind, no, columns FROM coupon_diff ORDER BY no")" \
"4|different|A10|used
4|different|A2|amount
4|only_left|A3|
4|only_right|A4|" "differences as rows"

# A key that is not unique is an error naming it, not a wrong answer.
sqlite3 "$T/old.db" "CREATE TABLE dup (no text, v integer); INSERT INTO dup VALUES ('x', 1), ('y', 1), ('y', 2);"
cat > dup.yaml <<'EOF'
job: dup
connections:
  old: "${env.OLD}"
steps:
  - name: shadow
    compare:
      left: {connection: old, query: "SELECT * FROM dup"}
      right: {connection: old, query: "SELECT * FROM dup WHERE v = 1"}
      key: [no]
EOF
expect_exit 1 "$NS" run dup.yaml
expect_err "left query: key (y) appears on two rows; compare.key must be unique"
sed -i 's/key: \[no\]/key: [nope]/' dup.yaml
expect_exit 1 "$NS" run dup.yaml
expect_err "nope"

# Many rows (across two databases in the PostgreSQL variant): differences
# found exactly, keys of mixed width ordered alike on both sides.
python3 - > big.sql <<'PY'
print("CREATE TABLE big (id integer PRIMARY KEY, v text);")
print("BEGIN;")
for i in range(1, 200001):
    print(f"INSERT INTO big VALUES ({i}, 'v{i}');")
print("COMMIT;")
PY
sqlite3 "$T/old.db" < big.sql
if [ -n "${COMPARE_PG:-}" ]; then
    new_sql "CREATE TABLE big (id integer PRIMARY KEY, v text)"
    new_sql "INSERT INTO big SELECT i, 'v' || i FROM generate_series(1, 200000) i"
else
    sqlite3 "$T/new.db" < big.sql
fi
new_sql "UPDATE big SET v = 'changed' WHERE id IN (7, 99999)"
new_sql "DELETE FROM big WHERE id = 150000"
new_sql "INSERT INTO big VALUES (200001, 'new')"
cat > big.yaml <<'EOF'
job: big
connections:
  old: "${env.OLD}"
  new: "${env.NEW}"
steps:
  - name: shadow
    compare:
      left: {connection: old, query: "SELECT id, v FROM big"}
      right: {connection: new, query: "SELECT id, v FROM big"}
      key: [id]
      output: big.csv
EOF
expect_exit 0 "$NS" run big.yaml
assert_eq "$(cut -d, -f1,2 big.csv | tail -n +2 | sort)" "different,7
different,99999
only_left,150000
only_right,200001" "differences among 200,000 rows"
echo "compare: ok ($NEW)"

#!/usr/bin/env bash
# The compare step across databases with MariaDB on one side (fixtures pg
# and mysql): MariaDB <-> PostgreSQL and SQLite <-> MariaDB give the same
# differences for the same rows (keys matched as text in byte order: MariaDB's
# default collation would call 'a' and 'A' equal and sort them together),
# and the differences go into a MariaDB table.
source "$(dirname "$0")/lib.sh"
export MY PG LITE="sqlite:$T/old.db"
MY=$(my_db ns_compare)
PG=$(pg_db ns_compare_my)
my_sql ns_compare -e "CREATE TABLE coupon (no varchar(10) COLLATE utf8mb4_bin PRIMARY KEY, user_id int, amount decimal(10,2), note varchar(20));
INSERT INTO coupon VALUES ('A1', 1, 10.5, 'x'), ('A2', 2, 20, 'x'), ('A3', 3, 30, NULL), ('A10', 4, 5, 'x'), ('B', NULL, 1, 'x'), ('b', 9, 9, 'x'), ('é', 5, 5, 'x');"
psql "$PG" -qc "CREATE TABLE coupon (no text PRIMARY KEY, user_id integer, amount numeric(10,2), note text);
INSERT INTO coupon VALUES ('A1', 1, 10.50, 'x'), ('A2', 2, 21, 'x'), ('A4', 4, 40, 'x'), ('A10', 4, 5, 'y'), ('B', NULL, 1, 'x'), ('b', 9, 9, 'x'), ('é', 5, 5, 'x');"
sqlite3 "$T/old.db" "CREATE TABLE coupon (no text PRIMARY KEY, user_id integer, amount numeric(10,2), note text);
INSERT INTO coupon VALUES ('A1', 1, 10.5, 'x'), ('A2', 2, 21, 'x'), ('A4', 4, 40, 'x'), ('A10', 4, 5, 'y'), ('B', NULL, 1, 'x'), ('b', 9, 9, 'x'), ('é', 5, 5, 'x');"
job() { # job FILE LEFT RIGHT OUTPUT
    cat > "$1" <<EOF
job: ${1%.yaml}
connections:
  my: "\${env.MY}"
  pg: "\${env.PG}"
  lite: "\${env.LITE}"
steps:
  - name: shadow
    compare:
      left: {connection: $2, query: "SELECT no, user_id, amount, note FROM coupon"}
      right: {connection: $3, query: "SELECT no, user_id, amount, note FROM coupon"}
      key: [no]
      output: $4
EOF
}
cat > want.csv <<'EOF'
kind,no,columns,left_values,right_values
different,A10,note,note=x,note=y
different,A2,amount,amount=20.00,amount=21.00
only_left,A3,,user_id=3; amount=30.00; note=NULL,
only_right,A4,,,user_id=4; amount=40.00; note=x
EOF
job my-pg.yaml my pg my-pg.csv
expect_exit 0 "$NS" run my-pg.yaml
diff -u want.csv my-pg.csv >&2 || fail "MariaDB <-> PostgreSQL"
# SQLite's numbers print as stored (21, 40); the rest the same.
job lite-my.yaml lite my lite-my.csv
expect_exit 0 "$NS" run lite-my.yaml
cat > want2.csv <<'EOF'
kind,no,columns,left_values,right_values
different,A10,note,note=y,note=x
different,A2,amount,amount=21,amount=20.00
only_right,A3,,,user_id=3; amount=30.00; note=NULL
only_left,A4,,user_id=4; amount=40; note=x,
EOF
diff -u want2.csv lite-my.csv >&2 || fail "SQLite <-> MariaDB"
job table.yaml pg my "{table: {connection: my, name: coupon_diff}}"
expect_exit 0 "$NS" run table.yaml
assert_eq "$(my_sql ns_compare -e "SELECT group_concat(concat(kind, ':', no) ORDER BY no SEPARATOR ' ') FROM coupon_diff")" \
    "different:A10 different:A2 only_right:A3 only_left:A4" "differences as MariaDB rows"
echo "compare with MariaDB: ok"

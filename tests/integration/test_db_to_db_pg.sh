#!/usr/bin/env bash
# DB -> DB jobs through the keyset query reader: PostgreSQL -> PostgreSQL
# (killed once mid-way, then resumed from the last key: every row exactly
# once), PostgreSQL -> SQLite and back SQLite -> PostgreSQL; the data arrive
# unchanged.
source "$(dirname "$0")/lib.sh"
export SRC_URL DST_URL DST_DB="$T/copy.db"
SRC_URL=$(pg_db ns_src)
DST_URL=$(pg_db ns_dst)
psql "$SRC_URL" -q <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), note text);
INSERT INTO orders SELECT i, 'customer ' || (i % 97), (i * 7 % 10000) / 100.0,
    CASE WHEN i % 5 = 0 THEN NULL ELSE E'line\twith tab and \\ backslash ' || i END
FROM generate_series(1, 300000) i;
SQL
psql "$DST_URL" -qc "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), note text)"
sqlite3 "$DST_DB" "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount NUMERIC(10,2), note TEXT)"
for dst in pg sqlite; do
    cat > "$dst.yaml" <<EOF2
job: orders-to-$dst
connections:
  src: "\${env.SRC_URL}"
  dst: "$([ $dst = pg ] && echo '${env.DST_URL}' || echo 'sqlite:${env.DST_DB}')"
steps:
  - name: copy
    chunk: 1000
    reader: {query: {connection: src, sql: "SELECT id, customer, amount, note FROM orders", key: [id]}}
    writer: {table: {connection: dst, name: orders}}
EOF2
done

"$NS" run pg.yaml > /dev/null 2> run.err & pid=$!
for _ in $(seq 300); do
    [ "$(psql "$DST_URL" -Atc 'SELECT count(*) FROM orders')" -gt 20000 ] && break
    sleep 0.02
done
kill -9 $pid 2>/dev/null || true
{ wait $pid; } 2>/dev/null || true
expect_exit 0 "$NS" run pg.yaml
expect_err "resuming after chunk"
expect_exit 0 "$NS" run sqlite.yaml
sum() { python3 -c "import sys, hashlib; print(hashlib.md5(sys.stdin.buffer.read()).hexdigest())"; }
want=$(psql "$SRC_URL" -AtF'|' -c "SELECT id, customer, amount, coalesce(note, '<null>') FROM orders ORDER BY id" | sum)
got_pg=$(psql "$DST_URL" -AtF'|' -c "SELECT id, customer, amount, coalesce(note, '<null>') FROM orders ORDER BY id" | sum)
got_sq=$(sqlite3 -separator '|' "$DST_DB" "SELECT id, customer, printf('%.2f', amount), coalesce(note, '<null>') FROM orders ORDER BY id" | sum)
assert_eq "$got_pg" "$want" "PostgreSQL -> PostgreSQL copy"
assert_eq "$got_sq" "$want" "PostgreSQL -> SQLite copy"
# And back: SQLite -> PostgreSQL, from the SQLite copy into a fresh table.
psql "$DST_URL" -qc "CREATE TABLE orders_back (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), note text)"
cat > back.yaml <<'EOF2'
job: orders-back
connections:
  src: "sqlite:${env.DST_DB}"
  dst: "${env.DST_URL}"
steps:
  - name: copy
    chunk: 1000
    reader: {query: {connection: src, sql: "SELECT id, customer, printf('%.2f', amount) AS amount, note FROM orders", key: [id]}}
    writer: {table: {connection: dst, name: orders_back}}
EOF2
expect_exit 0 "$NS" run back.yaml
got_back=$(psql "$DST_URL" -AtF'|' -c "SELECT id, customer, amount, coalesce(note, '<null>') FROM orders_back ORDER BY id" | sum)
assert_eq "$got_back" "$want" "SQLite -> PostgreSQL copy"
r1=$(show_field 1 "['steps'][0]['read_count']")
r2=$(show_field 2 "['steps'][0]['read_count']")
assert_eq "$((r1 + r2))" 300000 "rows read over the crash and the restart"
echo "db to db: ok (read $r1 + $r2 across a kill -9)"

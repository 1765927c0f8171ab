#!/usr/bin/env bash
# upsert and update into PostgreSQL (staging table + merge, bisected on a
# server error) against SQLite (row by row) and against a model that applies
# the records one by one: the same rows end in the table, the same records
# are rejected (line and code), the last record of a key wins, a record the
# server refuses leaves the earlier one of its key in place. Then an upsert
# into PostgreSQL killed with -9 and restarted ends in the same state.
source "$(dirname "$0")/lib.sh"
export PG_URL SQ_URL="sqlite:$T/t.db"
PG_URL=$(pg_db ns_merge)

schema() { # the same table on both: a key, a unique email, a CHECK, a length, a foreign key
    cat <<'SQL'
CREATE TABLE cat (c varchar(4) PRIMARY KEY);
INSERT INTO cat VALUES ('a'), ('b');
CREATE TABLE items (id integer PRIMARY KEY, email text UNIQUE, qty integer CHECK (qty >= 0),
    name varchar(10) NOT NULL, c varchar(4) REFERENCES cat);
SQL
}
reset() { # reset: both targets back to rows 1..1000
    psql "$PG_URL" -q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS items, cat" -c "$(schema)" \
        -c "INSERT INTO items SELECT g, 'e' || g, g, 'n' || g, 'a' FROM generate_series(1, 1000) g"
    rm -f "$T/t.db"
    { echo "PRAGMA foreign_keys = ON;"; schema
      echo "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 1000)
            INSERT INTO items SELECT x, 'e' || x, x, 'n' || x, 'a' FROM g;"; } | sqlite3 "$T/t.db"
    rm -f "$T/repo.db"
}
job() { # job NAME MODE CONN CSV: chunks of 100, rejects in NAME.rej.csv
    cat > "$1.yaml" <<EOF
job: $1
connections:
  target: "\${env.$3}"
steps:
  - name: load
    chunk: 100
    reader: {csv: {path: $4}}
    writer: {table: {connection: target, name: items, mode: $2, key: [id]}}
    rejects: $1.rej.csv
    skip: {limit: 100000}
EOF
}
dump_pg() { psql "$PG_URL" -AtF'|' -c "SELECT id, email, qty, name, c FROM items ORDER BY id"; }
dump_sq() { sqlite3 -separator '|' "$T/t.db" "SELECT id, email, qty, name, c FROM items ORDER BY id"; }
codes() { tail -n +2 "$1" | python3 -c "
import csv, sys
for r in csv.reader(sys.stdin): print(r[0], r[2])"; }

# --- a hand-made file: every case once, expected results spelled out.
cat > small.csv <<'EOF'
id,email,qty,name,c
2,e2,20,two,b
1001,e1001,10,new,a
1002,e1002,1,first,a
1002,e1002,2,second,a
1003,e1003,3,kept,a
1003,e1003,-1,refused,a
1004,e1,5,dupmail,a
1005,e1005,12x,badqty,a
1006,e1006,1,,a
1007,e1007,1,fk,zz
 1008,e1008,1,spaced,a
1008,e1008b,2,plain,a
3,e3,30,three,b
EOF
reset
job small_pg upsert PG_URL small.csv
job small_sq upsert SQ_URL small.csv
expect_exit 0 "$NS" run small_pg.yaml
expect_exit 0 "$NS" run small_sq.yaml
want_rej="7 23514
8 23505
9 22P02
10 23502
11 23503"
assert_eq "$(codes small_pg.rej.csv)" "$want_rej" "upsert rejects on PostgreSQL"
assert_eq "$(codes small_sq.rej.csv)" "$want_rej" "upsert rejects on SQLite"
grep -q 'Key (email)=(e1) already exists' small_pg.rej.csv || fail "reject lacks the server's detail"
want_rows="2|e2|20|two|b
3|e3|30|three|b
1001|e1001|10|new|a
1002|e1002|2|second|a
1003|e1003|3|kept|a
1008|e1008b|2|plain|a"
assert_eq "$(dump_pg | grep -E '^(2|3|100[1-9])\|')" "$want_rows" "upserted rows on PostgreSQL"
assert_eq "$(dump_pg)" "$(dump_sq)" "PostgreSQL and SQLite tables after the upsert"

# update: a key without a row, last wins, a refused record, a NULL key.
cat > small_upd.csv <<'EOF'
id,qty,name
2,20,two
99999,1,nothere
3,5,first
3,6,second
4,7,ok4
4,-1,bad4
,1,nullkey
5,abc,badqty
1,1,
EOF
reset
job upd_pg update PG_URL small_upd.csv
job upd_sq update SQ_URL small_upd.csv
expect_exit 0 "$NS" run upd_pg.yaml
expect_exit 0 "$NS" run upd_sq.yaml
want_rej="3 NS_NO_ROW
7 23514
8 NS_NO_ROW
9 22P02
10 23502"
assert_eq "$(codes upd_pg.rej.csv)" "$want_rej" "update rejects on PostgreSQL"
assert_eq "$(codes upd_sq.rej.csv)" "$want_rej" "update rejects on SQLite"
assert_eq "$(dump_pg | sed -n 1,5p)" "1|e1|1|n1|a
2|e2|20|two|a
3|e3|6|second|a
4|e4|7|ok4|a
5|e5|5|n5|a" "updated rows on PostgreSQL"
assert_eq "$(dump_pg)" "$(dump_sq)" "PostgreSQL and SQLite tables after the update"

# --- 20,000 random records against a model applying them one by one.
python3 - <<'EOF'
import csv, random
random.seed(7)
rows, state, rej = [], {i: (f'e{i}', i, f'n{i}', 'a') for i in range(1, 1001)}, []
upd_state, upd_rej = dict(state), []
for n in range(20000):
    line = n + 2
    k = random.randint(1, 3000)
    qty = random.randint(0, 99)
    r = random.random()
    q = str(qty)
    if r < 0.01: q = str(-qty - 1)       # CHECK
    elif r < 0.015: q = f'{qty}x'        # type
    name = f'v{n}' if random.random() > 0.005 else ''   # NOT NULL
    c = 'a' if random.random() > 0.005 else 'zz'        # foreign key
    email = f'u{k}'
    rows.append([k, email, q, name, c])
    ok_type = not q.endswith('x')
    def check():
        if not ok_type: return '22P02'
        if name == '': return '23502'
        if int(q) < 0: return '23514'
        if c == 'zz': return '23503'
        return None
    e = check()
    if e is None:
        # unique email: u{k} only ever belongs to key k, so no collision
        state[k] = (email, int(q), name, c)
    else:
        rej.append(f'{line} {e}')
    # update: the same file; the client's checks (type, NOT NULL) come first,
    # then a key without a row is NS_NO_ROW (nothing is written, so no CHECK
    # or foreign key is tested)
    if e not in ('22P02', '23502') and k not in upd_state: e = 'NS_NO_ROW'
    if e is None:
        upd_state[k] = (upd_state[k][0], int(q), name, c)
    else:
        upd_rej.append(f'{line} {e}')
with open('big.csv', 'w', newline='') as f:
    w = csv.writer(f); w.writerow(['id', 'email', 'qty', 'name', 'c']); w.writerows(rows)
with open('big_upd.csv', 'w', newline='') as f:
    w = csv.writer(f); w.writerow(['id', 'qty', 'name', 'c']); w.writerows([[r[0], r[2], r[3], r[4]] for r in rows])
def dump(st, fn):
    with open(fn, 'w') as f:
        for k in sorted(st): f.write('|'.join(map(str, (k,) + st[k])) + '\n')
dump(state, 'big.want'); dump(upd_state, 'big_upd.want')
open('big.rej.want', 'w').write('\n'.join(rej) + '\n')
open('big_upd.rej.want', 'w').write('\n'.join(upd_rej) + '\n')
EOF
for mode in upsert update; do
    csvf=big.csv; want=big; [ $mode = update ] && { csvf=big_upd.csv; want=big_upd; }
    reset
    job "b_${mode}_pg" $mode PG_URL $csvf
    job "b_${mode}_sq" $mode SQ_URL $csvf
    expect_exit 0 "$NS" run "b_${mode}_pg.yaml"
    expect_exit 0 "$NS" run "b_${mode}_sq.yaml"
    assert_eq "$(dump_pg)" "$(cat $want.want)" "$mode of 20,000 records on PostgreSQL vs the model"
    assert_eq "$(dump_sq)" "$(cat $want.want)" "$mode of 20,000 records on SQLite vs the model"
    assert_eq "$(codes b_${mode}_pg.rej.csv)" "$(cat $want.rej.want)" "$mode rejects on PostgreSQL"
    assert_eq "$(codes b_${mode}_sq.rej.csv)" "$(cat $want.rej.want)" "$mode rejects on SQLite"
done

# --- killed with -9 in the middle of an upsert, then restarted.
reset
job kill_pg upsert PG_URL big.csv
sed -i 's/chunk: 100$/chunk: 500/' kill_pg.yaml
NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=13 "$NS" run kill_pg.yaml >/dev/null 2>&1 && fail "the fault point did not fire"
expect_exit 0 "$NS" restart 1
expect_err "resuming after chunk"
assert_eq "$(dump_pg)" "$(cat big.want)" "upsert across a crash"
assert_eq "$(codes kill_pg.rej.csv)" "$(cat big.rej.want)" "rejects across a crash (each once)"
# --- jobs that cannot work are refused before anything is read.
psql "$PG_URL" -qc "CREATE TABLE nokey (id integer, v text)" -c "CREATE TABLE onekey (id integer PRIMARY KEY, v text)"
printf 'id,v\n1,a\n' > one.csv
job bad1 upsert PG_URL one.csv
sed -i 's/name: items/name: nokey/' bad1.yaml
expect_exit 1 "$NS" run bad1.yaml
expect_err "mode: upsert needs a primary key or unique index on exactly its key columns, and table nokey has none (its unique keys: none)"
job bad2 upsert PG_URL one.csv
sed -i -e "s/key: \\[id\\]/key: [id, v]/" -e "s/name: items/name: onekey/" bad2.yaml
expect_exit 1 "$NS" run bad2.yaml
expect_err "its unique keys: (id)"
printf 'v\n1\n' > nokeycol.csv
job bad3 update PG_URL nokeycol.csv
sed -i 's/name: items/name: onekey/' bad3.yaml
expect_exit 1 "$NS" run bad3.yaml
expect_err "key column 'id' is not in the input"
printf 'id\n1\n' > keyonly.csv
job bad4 update PG_URL keyonly.csv
sed -i 's/name: items/name: onekey/' bad4.yaml
expect_exit 1 "$NS" run bad4.yaml
expect_err "mode: update needs input columns besides the key"
assert_eq "$(psql "$PG_URL" -Atc 'SELECT (SELECT count(*) FROM nokey) + (SELECT count(*) FROM onekey)')" 0 "rows written by refused jobs"

echo "merge: ok (upsert/update on PostgreSQL = SQLite = model; 20,000 records; crash + restart)"

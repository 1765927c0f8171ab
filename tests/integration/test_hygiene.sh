#!/usr/bin/env bash
# Small things that were wrong (issue 21), each done on purpose:
# - an exit message with invalid UTF-8, control bytes and a NUL (an
#   assertion's offending row) is the same cleaned line in stderr, show,
#   show --json and list --json, whole after the NUL;
# - a ${...} reference longer than 160 characters is used whole;
# - the file writer's format follows the path a run substitutes;
# - SIGTERM and `nightshift stop` reach a run waiting on another
#   connection's SQLite lock at once, not after the 30 s wait.
source "$(dirname "$0")/lib.sh"

# hold_lock DB: another process takes DB's EXCLUSIVE lock and holds it (up
# to a minute); its pid in $locker.
hold_lock() {
    rm -f "$T/lock.out"
    python3 - "$1" > "$T/lock.out" 2>&1 <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
PY
    locker=$!
    for _ in $(seq 100); do grep -q locked "$T/lock.out" && return 0; sleep 0.05; done
    fail "could not lock $1"
}
let_go() { kill "$locker" 2> /dev/null || true; wait "$locker" 2> /dev/null || true; }

# --- an exit message from a hostile row -------------------------------------
python3 - "$T/bad.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("CREATE TABLE t (id INTEGER, v BLOB)")
c.execute("INSERT INTO t VALUES (1, CAST(? AS TEXT))", (b"caf\xe9\x01\x1b[31mred\nline",))
c.execute("INSERT INTO t VALUES (2, CAST(? AS TEXT))", (b"before\x00after-the-nul",))
c.commit()
PY
cat > assert.yaml <<YAML
job: hostile-assert
connections:
  db: "sqlite:$T/bad.db"
steps:
  - name: check
    assert: {connection: db, sql: "SELECT id, v FROM t ORDER BY id"}
YAML
expect_exit 1 "$NS" run assert.yaml
grep -q 'after-the-nul' "$T/err" || fail "stderr cut the message at a NUL: $(cat "$T/err")"
python3 - "$T/err" <<'PY' || fail "stderr carries raw bytes: $(cat -v "$T/err")"
import sys
t = open(sys.argv[1], 'rb').read()
t.decode('utf-8')
assert b'\x1b' not in t and b'\x01' not in t, t
PY
"$NS" show 1 --json > show.json
"$NS" list --json > list.json
"$NS" show 1 > show.txt
python3 - show.json list.json show.txt <<'PY' || fail "the exit message was lost or differs"
import json, sys
s = json.load(open(sys.argv[1]))["exit_message"]
l = [e for e in json.load(open(sys.argv[2])) if e["id"] == 1][0]["exit_message"]
assert s == l, (s, l)
assert "assertion failed: 2 rows" in s and "caf?" in s and "red line" in s, s
assert "before\\x00after-the-nul" in s, s
assert not any(ord(c) < 32 for c in s), s
assert s in open(sys.argv[3], encoding="utf-8").read()
PY

# --- a long ${...} reference ------------------------------------------------
# (a default of 250 characters: the path with "./" a hundred times)
dots=$(python3 -c "print('./' * 100)")
cat > long.yaml <<YAML
job: long-ref
connections:
  db: "sqlite:\${env.NS21_UNSET_VARIABLE_WITH_A_NAME_THAT_IS_RATHER_LONG_TOO:-$T/${dots}long.db}"
steps:
  - name: s
    sql: {connection: db, script: "CREATE TABLE o (v TEXT); INSERT INTO o VALUES ('whole')"}
YAML
expect_exit 0 "$NS" run long.yaml
assert_eq "$(sqlite3 "$T/long.db" 'SELECT v FROM o')" whole "a long \${env.X:-default} used whole"

# --- the file writer's format from the substituted path ---------------------
sqlite3 "$T/src.db" "CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO s VALUES (1, 'a'), (2, 'b')"
cat > export.yaml <<YAML
job: export-by-param
params:
  out: {type: string, required: true}
connections:
  src: "sqlite:$T/src.db"
steps:
  - name: e
    reader: {query: {connection: src, sql: "SELECT id, v FROM s", key: [id]}}
    writer: {file: {path: "\${params.out}"}}
YAML
expect_exit 0 "$NS" run export.yaml out=x.jsonl
python3 -c "
import json
rows = [json.loads(l) for l in open('x.jsonl')]
assert [r['v'] for r in rows] == ['a', 'b'], rows
" || fail "out=x.jsonl did not write JSON Lines: $(cat x.jsonl)"
expect_exit 0 "$NS" run export.yaml out=y.csv
head -1 y.csv | grep -q '^id,v' || fail "out=y.csv did not write CSV: $(cat y.csv)"
sed 's|path: "${params.out}"}|path: "${params.out}", header: false}|' export.yaml > export-h.yaml
grep -q 'header: false' export-h.yaml || fail "the test's own sed"
expect_exit 1 "$NS" run export-h.yaml out=z.jsonl
expect_err "writer.file.header: only for format: csv"

# --- stop and SIGTERM reach a run waiting on an SQLite lock ------------------
sqlite3 "$T/locked.db" "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)"
csv_rows 1 50 > in.csv
export TARGET_URL="sqlite:$T/locked.db"
load_job locked.yaml locked k
hold_lock "$T/locked.db"
for how in SIGTERM stop; do
    "$NS" run locked.yaml file=in.csv "how=$how" > "run-$how.out" 2> "run-$how.err" &
    pid=$!
    id=
    for _ in $(seq 100); do
        id=$(sql "$T/repo.db" "SELECT max(id) FROM ns_job_execution WHERE status = 'STARTED'")
        [ -n "$id" ] && break
        sleep 0.05
    done
    [ -n "$id" ] || fail "$how: the run did not start"
    sleep 1 # waiting on the lock by now
    t0=$(date +%s)
    if [ "$how" = SIGTERM ]; then kill -TERM "$pid"; else "$NS" stop "$id" > /dev/null; fi
    rc=0
    wait "$pid" || rc=$?
    took=$(($(date +%s) - t0))
    [ "$rc" = 3 ] || { cat "run-$how.err"; fail "$how: a run waiting on a lock exited $rc, want 3 (STOPPED)"; }
    [ "$took" -lt 10 ] || fail "$how: the run took ${took}s to stop (the lock's 30 s wait?)"
    assert_eq "$(show_field "$id" "['status']")" STOPPED "$how: the execution"
done
let_go
# the lock gone, a stopped run restarts and loads everything once
expect_exit 0 "$NS" run locked.yaml file=in.csv how=SIGTERM
assert_eq "$(sql "$T/locked.db" 'SELECT count(*), count(DISTINCT id) FROM k')" "50|50" "rows after the restart"
echo "hygiene: hostile exit messages, long references, file format by path, stop on a lock"

# --- a query reader's wait on a locked SQLite source follows statement_timeout
# (it waited 30 s whatever the connection said)
sqlite3 "$T/qsrc.db" "PRAGMA journal_mode = DELETE; CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO s VALUES (1, 'a')" > /dev/null
cat > qlocked.yaml <<YAML
job: query-locked
connections:
  src: {url: "sqlite:$T/qsrc.db", statement_timeout: 1s}
steps:
  - name: e
    retry: {limit: 0}
    reader: {query: {connection: src, sql: "SELECT id, v FROM s", key: [id]}}
    writer: {file: {path: "q.csv"}}
YAML
hold_lock "$T/qsrc.db"
t0=$(date +%s)
expect_exit 1 "$NS" run qlocked.yaml
took=$(($(date +%s) - t0))
let_go
expect_err "database is locked"
[ "$took" -lt 10 ] || fail "the query waited ${took}s on the lock, past its 1 s statement_timeout"
echo "hygiene: the query reader's lock wait follows statement_timeout"

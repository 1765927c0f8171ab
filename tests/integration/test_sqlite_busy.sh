#!/usr/bin/env bash
# SQLite BUSY (docs/operations.md, "What is transient"): another process
# takes an exclusive lock on the target in the middle of a load and holds it
# longer than the connection waits (its statement_timeout, 2 s here, else
# 30 s); the write fails with SQLITE_BUSY, the step retries it, and once the
# lock is gone the load completes by itself with every row once.
source "$(dirname "$0")/lib.sh"
ROWS=300000
csv_rows 1 "$ROWS" > in.csv
export TARGET_URL="sqlite:$T/target.db"
sqlite3 "$T/target.db" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT)"
load_job job.yaml busy k "retry: {limit: 8, backoff: {initial: 500ms, max: 1s}}"
sed -i "s|  target: \"\${env.TARGET_URL}\"|  target: {url: \"\${env.TARGET_URL}\", statement_timeout: 2s}|" job.yaml
"$NS" run job.yaml file=in.csv > out 2> err &
pid=$!
python3 - "$T/target.db" <<'PY' || fail "could not take the lock mid-load"
import sqlite3, sys, time
for _ in range(400):
    n = sqlite3.connect(sys.argv[1], timeout=30).execute("SELECT count(*) FROM k").fetchone()[0]
    if n > 0:
        break
    time.sleep(0.02)
assert n > 0, "the load did not start"
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
held = c.execute("SELECT count(*) FROM k").fetchone()[0]
assert held < 300000, "the load ended before the lock"
time.sleep(5)
c.execute("ROLLBACK")
PY
rc=0
wait $pid || rc=$?
[ "$rc" == 0 ] || { cat err >&2; fail "the load did not complete by itself after the lock (exit $rc)"; }
grep -q "database locked by another connection" err || { cat err >&2; fail "no retry on SQLITE_BUSY was logged"; }
assert_eq "$(sql "$T/target.db" "SELECT count(*), count(DISTINCT id) FROM k")" "$ROWS|$ROWS" "rows after the lock"
[ "$(show_eval 1 "d['steps'][0]['retry_count']")" -ge 1 ] || fail "the retry is not counted"
echo "ok: SQLITE_BUSY past the connection's wait is retried; every row once"

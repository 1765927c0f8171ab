#!/usr/bin/env bash
# A frozen backend (docs/operations.md, "Timeouts"): the target's backend is
# stopped with SIGSTOP in the middle of a load, so it answers neither the
# COPY nor a cancel request, and the connection stays open. The client
# enforces the connection's statement_timeout: it cancels, then drops the
# connection, and the chunk is retried on a new one; once the frozen backend
# is gone the load completes by itself with every row once. SIGTERM reaches a run blocked the same way:
# STOPPED (exit 3) within seconds, and the next run resumes. The limit is a
# key of the connection, checked when the job file loads.
source "$(dirname "$0")/lib.sh"
ROWS=200000
TARGET_URL=$(pg_db ns_timeout)
export TARGET_URL
frozen=
trap '[ -n "$frozen" ] && kill -CONT $frozen 2>/dev/null; cleanup' EXIT
csv_rows 1 "$ROWS" > in.csv
# no unique key: a frozen transaction's rows would hold a retried chunk's
# keys until it ends (see docs/operations.md)
reset_table() { db_sql "$TARGET_URL" "DROP TABLE IF EXISTS k, nightshift_checkpoint; CREATE TABLE k (id int, v text)" > /dev/null; }
job() { # job NAME LIMIT RETRY
    load_job "$1.yaml" "$1" k "retry: $3"
    sed -i "s|  target: \"\${env.TARGET_URL}\"|  target: {url: \"\${env.TARGET_URL}\", statement_timeout: $2}|; s/chunk: 100$/chunk: 2000/" "$1.yaml"
}
# freeze: SIGSTOP the backend of the load's connection once rows are in
freeze() {
    local n=0
    for _ in $(seq 400); do
        n=$(db_sql "$TARGET_URL" "SELECT count(*) FROM k")
        [ "$n" -gt 0 ] && break
        sleep 0.05
    done
    [ "$n" -gt 0 ] || fail "the load did not start"
    # caught in a chunk's COPY (frozen in its commit, it would hold the
    # checkpoint row's lock, which every retry then waits for: see
    # docs/operations.md)
    for _ in $(seq 500); do
        frozen=$(db_sql "$TARGET_URL" "SELECT pid FROM pg_stat_activity WHERE application_name = 'nightshift'
            AND datname = current_database() AND state = 'active' AND query LIKE '%COPY %'
            ORDER BY backend_start LIMIT 1")
        [ -n "$frozen" ] && break
        sleep 0.01
    done
    [ -n "$frozen" ] || fail "no busy backend of the load to freeze"
    kill -STOP "$frozen"
    # Stopped while holding a lock of the whole server (a WAL insertion
    # lock), it would hang every other backend, the test's own queries
    # included: then it is let go and caught again a moment later.
    local tries
    for tries in 1 2 3 4 5; do
        timeout 5 psql "$TARGET_URL" -qAtX -c "CREATE TEMP TABLE probe AS SELECT 1" > /dev/null 2>&1 && return 0
        echo "freeze: the server hung with backend $frozen stopped (try $tries): let go, caught again" >&2
        kill -CONT "$frozen"
        sleep 0.2
        kill -STOP "$frozen"
    done
    fail "the server hangs whenever backend $frozen is stopped"
}
thaw() { kill -CONT "$frozen" 2>/dev/null || true; frozen=; }

# --------------------------- past the limit: cancelled, dropped, retried
reset_table
job limit 2s "{limit: 3, backoff: {initial: 100ms}}"
t0=$(date +%s)
"$NS" run limit.yaml file=in.csv > limit.out 2> limit.err &
pid=$!
freeze
# the client cuts the frozen statement short on its own (cancel, then drop)
for _ in $(seq 300); do
    grep -q "ran past its statement_timeout (2s) and was cut short" limit.err && break
    sleep 0.05
done
grep -q "ran past its statement_timeout (2s) and was cut short" limit.err ||
    { cat limit.err >&2; fail "the frozen statement was not cut short at its limit"; }
t=$(($(date +%s) - t0))
[ "$t" -le 12 ] || fail "the frozen statement was cut short after ${t}s (limit 2 s + 5 s)"
# Thawed (as a frozen backend is, or killed), it finds its connection gone
# and ends, releasing its locks (a table's extension lock, taken in the
# middle of a COPY, would hold the retry up for as long as it stays frozen)
thaw
rc=0
timeout 120 tail --pid=$pid -f /dev/null || true
wait $pid || rc=$?
[ "$rc" == 0 ] || { cat limit.err >&2; fail "the load did not complete by itself after a frozen backend (exit $rc)"; }
assert_eq "$(db_sql "$TARGET_URL" "SELECT count(*), count(DISTINCT id) FROM k")" "$ROWS|$ROWS" "rows after a frozen backend"
id=$("$NS" list --json --limit 1 | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
[ "$(show_eval "$id" "d['steps'][0]['retry_count']")" -ge 1 ] || fail "the retry is not counted"
echo "ok: a frozen backend past statement_timeout: cut short after ${t}s, retried; the load completed"

# --------------------------------------- SIGTERM reaches a blocked run
reset_table
job stop 1h "{limit: 3}"
"$NS" run stop.yaml file=in.csv > stop.out 2> stop.err &
pid=$!
freeze
sleep 1
t0=$(date +%s)
kill -TERM $pid
rc=0
timeout 60 tail --pid=$pid -f /dev/null || true
wait $pid || rc=$?
t=$(($(date +%s) - t0))
thaw
[ "$rc" == 3 ] || { cat stop.err >&2; fail "SIGTERM during a blocked statement: exit $rc, expected 3"; }
[ "$t" -le 15 ] || fail "SIGTERM took ${t}s to stop a blocked run"
grep -q "cut short on a stop request" stop.err || { cat stop.err >&2; fail "the stop is not said"; }
id=$("$NS" list --json --limit 1 | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
assert_eq "$(show_field "$id" "['status']")" STOPPED "status after SIGTERM in a blocked statement"
expect_exit 0 "$NS" run stop.yaml file=in.csv
expect_err "restarts execution $id"
assert_eq "$(db_sql "$TARGET_URL" "SELECT count(*), count(DISTINCT id) FROM k")" "$ROWS|$ROWS" "rows after the stop and the restart"
echo "ok: SIGTERM stops a run blocked in a statement in ${t}s (exit 3); the next run resumes"

# ---------------------------------- nightshift stop reaches a blocked run
reset_table
job stopcmd 1h "{limit: 3}"
"$NS" run stopcmd.yaml file=in.csv > stopcmd.out 2> stopcmd.err &
pid=$!
freeze
sleep 1
id=$("$NS" list --json --limit 1 | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
t0=$(date +%s)
expect_exit 0 "$NS" stop "$id"
rc=0
timeout 60 tail --pid=$pid -f /dev/null || true
wait $pid || rc=$?
t=$(($(date +%s) - t0))
thaw
[ "$rc" == 3 ] || { cat stopcmd.err >&2; fail "nightshift stop during a blocked statement: exit $rc, expected 3"; }
[ "$t" -le 15 ] || fail "nightshift stop took ${t}s to stop a blocked run"
assert_eq "$(show_field "$id" "['status']")" STOPPED "status after nightshift stop in a blocked statement"
expect_exit 0 "$NS" run stopcmd.yaml file=in.csv
assert_eq "$(db_sql "$TARGET_URL" "SELECT count(*), count(DISTINCT id) FROM k")" "$ROWS|$ROWS" "rows after nightshift stop and the restart"
echo "ok: nightshift stop reaches a run blocked in a statement in ${t}s (an SQLite repository)"

# ------------------ the heartbeat proves progress, not only life
# A PostgreSQL repository (lease 3 s: a beat a second). While the frozen
# statement is within its limit (4 s) the run's heartbeat is renewed; past
# it (until the connection is dropped, 5 s later) it is not.
REPO=$(pg_db ns_timeout_repo)
reset_table
job beat 4s "{limit: 3, backoff: {initial: 100ms}}"
NIGHTSHIFT_REPOSITORY=$REPO NIGHTSHIFT_LEASE=3 "$NS" run beat.yaml file=in.csv > beat.out 2> beat.err &
pid=$!
freeze
f0=$(date +%s.%N)
at() { python3 -c "import time, sys; time.sleep(max(0, float(sys.argv[1]) + float(sys.argv[2]) - time.time()))" "$f0" "$1"; }
beat() { timeout 20 psql "$REPO" -qAtX -c "SELECT heartbeat FROM nightshift.ns_job_execution ORDER BY id DESC LIMIT 1" || echo "no answer $1"; }
at 0.5; h1=$(beat 1)
at 3.2; h2=$(beat 2)
at 5.2; h3=$(beat 3)
at 8.0; h4=$(beat 4)
grep -q "ran past its statement_timeout" beat.err && fail "the statement was cut short before 8 s (limit 4 s + 5 s)"
thaw
rc=0
timeout 120 tail --pid=$pid -f /dev/null || true
wait $pid || rc=$?
[ "$rc" == 0 ] || { cat beat.err >&2; fail "the load with a PostgreSQL repository: exit $rc"; }
[ "$h1" != "$h2" ] || fail "the heartbeat was not renewed while the statement was within its limit ($h1)"
assert_eq "$h4" "$h3" "the heartbeat while the statement was past its limit"
echo "ok: the heartbeat is renewed while a statement is within its limit, not past it"

# --------------------------------------------------- the key itself
job bad 2s "{limit: 1}"
sed -i 's/statement_timeout: 2s/statement_timeout: soon/' bad.yaml
expect_exit 2 "$NS" validate bad.yaml
expect_err "connections.target.statement_timeout: must be a duration"
sed -i 's/statement_timeout: soon/statement_timout: 2s/' bad.yaml
expect_exit 2 "$NS" validate bad.yaml
expect_err "connections.target.statement_timout: unknown key (expected one of: url, statement_timeout)"
echo "ok: statement_timeout is checked when the job file loads"

# --------------------------------- SQL steps: retried as a whole, limited
db_sql "$TARGET_URL" "DROP TABLE IF EXISTS once; CREATE TABLE once (n int)" > /dev/null
cat > sqlstep.yaml <<'YAML'
job: sqlstep
params:
  how: {type: string, default: ''}
connections:
  target: {url: "${env.TARGET_URL}", statement_timeout: 1s}
steps:
  - name: slow
    retry: {limit: 2, backoff: {initial: 100ms}}
    sql:
      connection: target
      script: "INSERT INTO once SELECT 1 FROM pg_sleep(CASE WHEN CAST(:how AS text) = 'slow' THEN 5 ELSE 0.5 END)"
YAML
# terminated in the middle of its statement: the step is done again, once
"$NS" run sqlstep.yaml how=kill > sql.out 2> sql.err &
pid=$!
for _ in $(seq 100); do
    n=$(db_sql "$TARGET_URL" "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO once%' AND state = 'active'")
    [ "$n" -gt 0 ] && break
    sleep 0.05
done
db_sql "$TARGET_URL" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO once%' AND state = 'active'" > /dev/null
rc=0
wait $pid || rc=$?
[ "$rc" == 0 ] || { cat sql.err >&2; fail "a sql step whose backend was terminated: exit $rc"; }
grep -qE "step slow failed \((connection lost|server shut down by an administrator)[^)]*\), retry 1 of 2" sql.err ||
    { cat sql.err >&2; fail "the sql step's retry is not logged"; }
assert_eq "$(db_sql "$TARGET_URL" "SELECT count(*) FROM once")" 1 "rows of a sql step retried after its backend was terminated"
# past its statement_timeout every time: cancelled, retried, then failed naming both
expect_exit 1 "$NS" run sqlstep.yaml how=slow
expect_err "ran past its statement_timeout (1s) and was cut short"
expect_err "gave up after 2 retries"
assert_eq "$(db_sql "$TARGET_URL" "SELECT count(*) FROM once")" 1 "rows after a sql step that always ran out of time"
echo "ok: a sql step is retried as a whole after a terminated backend, and cut short at its statement_timeout"

#!/usr/bin/env bash
# Retries and reconnects (docs/operations.md, "Retries"), each fault provoked
# for real on a PostgreSQL server of the test's own (it is restarted and
# stopped, so not the shared one): the target's backend terminated at random
# moments of 500k-row loads, 20 times in all; the server restarted mid-load
# with -m fast and with -m immediate; the server gone for longer than the
# policy waits (the step fails, naming the tries; a later run resumes); no
# retry where the policy says none; a stop during the wait. Every load ends
# with every good row once and every bad row once in the rejects.
source "$(dirname "$0")/lib.sh"
ROWS=500000
PGSTATE=$T/pg
export NS_PG_PORT=$((54400 + $$ % 500))
(cd / && bash "$NS_SRC/tests/pg/pg-ctl.sh" start "$PGSTATE" >/dev/null)
trap 'bash "$NS_SRC/tests/pg/pg-ctl.sh" stop "$PGSTATE"; cleanup' EXIT
pgdir=$(cat "$PGSTATE/dir")
bindir=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# pg_ctl on the test's server, started as tests/pg/pg-ctl.sh starts it
pgctl() {
    (cd / && as_owner "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" \
        -o "-c listen_addresses='' -c unix_socket_directories='$pgdir' -c port=$NS_PG_PORT -c fsync=off" \
        "$@" >/dev/null)
}
admin=$(cat "$PGSTATE/url")
psql "$admin" -qAtc "CREATE DATABASE rt" >/dev/null
export TARGET_URL=${admin/\/postgres\?/\/rt?}

# Every 1000th row is bad (a CHECK the client cannot see coming: the
# server's refusal is a row error, never a reason to retry).
python3 - > in.csv <<PY
print("id,v")
for i in range(1, $ROWS + 1):
    print(f"{i},{'bad' if i % 1000 == 0 else 'v' + str(i)}")
PY
good=$((ROWS - ROWS / 1000))
reset_table() {
    psql "$TARGET_URL" -qc "SET client_min_messages = warning" \
        -c "DROP TABLE IF EXISTS k, nightshift_checkpoint" \
        -c "CREATE TABLE k (id int PRIMARY KEY, v text CHECK (v <> 'bad'))"
    rm -rf rejects
}
# job NAME RETRY: the load with a retry policy (chunk 2,000: 250 chunks)
job() {
    load_job "$1.yaml" "$1" k "skip: {limit: 100000}" 'rejects: "rejects/${execution.id}.csv"' \
        "retry: $2"
    sed -i 's/chunk: 100$/chunk: 2000/' "$1.yaml"
}
# check_load ID WHAT: the table holds every good row once, the rejects files
# every bad line once (a retried chunk's rejects are cut back, never doubled).
check_load() {
    assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*), sum(id) FROM k")" \
        "$good|$(python3 -c "n=$ROWS; print(n*(n+1)//2 - 1000*(n//1000)*(n//1000+1)//2)")" \
        "$2: rows loaded (count|sum)"
    python3 - "$ROWS" "$2" <<'PY' || exit 1
import csv, glob, sys
rows, what = int(sys.argv[1]), sys.argv[2]
got = sorted(int(r["line"]) - 1 for f in glob.glob("rejects/*.csv")
             for r in csv.DictReader(open(f, newline="")))
want = list(range(1000, rows + 1, 1000))
if got != want:
    dup = sorted({x for x in got if got.count(x) > 1})[:5]
    sys.exit(f"FAIL: {what}: {len(got)} rejects, want {len(want)}; repeated: {dup}")
codes = {r["code"] for f in glob.glob("rejects/*.csv") for r in csv.DictReader(open(f, newline=""))}
if codes != {"23514"}:
    sys.exit(f"FAIL: {what}: reject codes {codes}, want only 23514")
PY
}
# under_way: waits (10 s at most) until the load has committed its first chunks
under_way() {
    local n
    for _ in $(seq 100); do
        n=$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM k" 2>/dev/null || echo 0)
        [ "$n" -gt 20000 ] && return 0
        sleep 0.1
    done
}
last_id() { "$NS" list --json --limit 1 | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])"; }
# kill_backends: terminates nightshift's connections to the target; prints how many
kill_backends() {
    psql "$admin" -qAtc "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
        WHERE datname = 'rt' AND application_name = 'nightshift'" 2>/dev/null || echo 0
}

# --- a backend terminated at random moments, 20 times over as many loads as it takes
job terminate "{limit: 5, backoff: {initial: 50ms, max: 400ms}}"
kills=0 loads=0
while [ "$kills" -lt 20 ]; do
    reset_table
    "$NS" run terminate.yaml file=in.csv how="load$loads" >out 2>err &
    pid=$!
    here=0
    while kill -0 "$pid" 2>/dev/null && [ "$kills" -lt 20 ]; do
        sleep "0.$((RANDOM % 4 + 1))"
        k=$(kill_backends)
        here=$((here + k)) kills=$((kills + k))
    done
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" == 0 ] || { cat err >&2; fail "load $loads: exit $rc after $here terminations"; }
    check_load "$(last_id)" "load $loads ($here terminations)"
    id=$(last_id)
    retries=$(show_eval "$id" "d['steps'][0]['retry_count']")
    said=$(grep -c "retry [0-9]* of 5" err || true)
    assert_eq "$retries" "$said" "load $loads: retry_count against the retries logged"
    [ "$here" == 0 ] || [ "$retries" -ge 1 ] || fail "load $loads: $here terminations, no retry counted"
    [ "$here" == 0 ] || grep -qE "server shut down by an administrator|connection lost" err ||
        { cat err >&2; fail "load $loads: the retries do not say their cause"; }
    assert_eq "$(show_field "$id" "['status']")" COMPLETED "load $loads: status"
    # the counters reconcile after the retries: read = written + skipped
    assert_eq "$(show_eval "$id" "'%d %d %d' % tuple(d['steps'][0][k] for k in ('read_count', 'write_count', 'write_skip_count'))")" \
        "$ROWS $good $((ROWS / 1000))" "load $loads: read, written, rejected"
    if [ "$retries" -gt 0 ]; then
        "$NS" show "$id" | grep -qE "[0-9]+ retr(y|ies) after a transient failure" || fail "load $loads: show does not say"
        # where the time went: the waits are there, and the parts add up to no more than the step
        show_eval "$id" "(lambda s: s['retry_wait'] > 0 and s['write'] > 0 and sum(s.values()) > 0)(d['steps'][0]['seconds'])" |
            grep -q True || fail "load $loads: the step's times do not show the retry waits"
        "$NS" show "$id" | grep -qE "time: read [0-9.]+s, process [0-9.]+s, write [0-9.]+s, commit [0-9.]+s, retry wait [0-9.]+s; [0-9,]+ items/s" ||
            fail "load $loads: show does not say where the time went"
    fi
    loads=$((loads + 1))
    [ "$loads" -lt 40 ] || fail "only $kills terminations landed in 40 loads"
done
echo "ok: $kills backend terminations over $loads loads, every row exactly once"

# --- the server restarted mid-load: fast (clean shutdown), then immediate (crash recovery)
job restart "{limit: 10, backoff: {initial: 200ms, max: 2s}}"
for mode in fast immediate; do
    reset_table
    "$NS" run restart.yaml file=in.csv how="$mode" >out 2>err &
    pid=$!
    # once the first chunks are in
    under_way
    kill -0 "$pid" 2>/dev/null || fail "restart $mode: the load ended before the restart"
    pgctl -m "$mode" -w restart
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" == 0 ] || { cat err >&2; fail "restart -m $mode: exit $rc"; }
    check_load "$(last_id)" "restart -m $mode"
    [ "$(show_eval "$(last_id)" "d['steps'][0]['retry_count']")" -ge 1 ] ||
        fail "restart -m $mode: no retry counted"
    echo "ok: pg_ctl restart -m $mode mid-load"
done

# --- the repository's server restarted mid-load: the repository in the
# target's own database (one connection, shared), then in another database
# of the same server (its own connection); the run completes by itself and
# its record says so
psql "$admin" -qAtc "CREATE DATABASE rt_repo" >/dev/null
for where in shared apart; do
    if [ "$where" == shared ]; then repo=$TARGET_URL; else repo=${admin/\/postgres\?/\/rt_repo?}; fi
    reset_table
    NIGHTSHIFT_REPOSITORY=$repo "$NS" run restart.yaml file=in.csv how="repo-$where" >out 2>err &
    pid=$!
    under_way
    kill -0 "$pid" 2>/dev/null || fail "repository $where: the load ended before the restart"
    pgctl -m fast -w restart
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" == 0 ] || { cat err >&2; fail "repository $where restarted: exit $rc"; }
    id=$(NIGHTSHIFT_REPOSITORY=$repo last_id)
    assert_eq "$(NIGHTSHIFT_REPOSITORY=$repo show_field "$id" "['status']")" COMPLETED "repository $where restarted: status"
    NIGHTSHIFT_REPOSITORY=$repo check_load "$id" "repository $where restarted"
    echo "ok: the repository's server restarted mid-load ($where): the run completed"
done
psql "$TARGET_URL" -qc "SET client_min_messages = warning" -c "DROP SCHEMA nightshift CASCADE"

# --- the server gone longer than the policy waits: the step fails, saying
# how often it tried; with the server back, the next run resumes and
# completes, every row once.
job gone "{limit: 2, backoff: {initial: 100ms, max: 200ms}}"
reset_table
"$NS" run gone.yaml file=in.csv >out 2>err &
pid=$!
under_way
pgctl -m fast -w stop
rc=0
wait "$pid" || rc=$?
[ "$rc" == 1 ] || { cat err >&2; fail "server gone: exit $rc, expected 1"; }
grep -q "gave up after 2 retries" err || { cat err >&2; fail "server gone: the failure does not say it gave up"; }
id=$(last_id)
assert_eq "$(show_field "$id" "['status']")" FAILED "server gone: status"
show_eval "$id" "d['steps'][0]['exit_message']" | grep -q "gave up after 2 retries" ||
    fail "server gone: the repository's exit message does not say it gave up"
pgctl -w start
expect_exit 0 "$NS" run gone.yaml file=in.csv
grep -q "resuming after chunk" "$T/err" || { cat "$T/err" >&2; fail "server back: the run did not resume"; }
check_load "$(last_id)" "server gone, then back"
echo "ok: past the limit the step fails, a later run resumes"

# --- an SQL step whose server goes away for two seconds mid-statement: its
# reconnections are refused meanwhile, and since it had been connected that
# is the connection lost, retried until the server is back (a connection
# never made would fail at once: test_secrets_pg.sh).
cat > sqldown.yaml <<YAML
job: sqldown
connections:
  target: "\${env.TARGET_URL}"
steps:
  - name: s
    retry: {limit: 20, backoff: {initial: 200ms, max: 500ms}}
    sql: {connection: target, script: "CREATE TABLE IF NOT EXISTS down (n int); INSERT INTO down SELECT 1 FROM pg_sleep(3)"}
YAML
psql "$TARGET_URL" -qc "DROP TABLE IF EXISTS down" 2>/dev/null
"$NS" run sqldown.yaml > out 2> err &
pid=$!
asleep=0
for _ in $(seq 100); do
    asleep=$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nightshift' AND wait_event = 'PgSleep'")
    [ "$asleep" -gt 0 ] && break
    sleep 0.05
done
[ "$asleep" -gt 0 ] || { cat err >&2; fail "the SQL step's statement was never seen running"; }
pgctl -m fast -w stop
sleep 2
pgctl -w start
rc=0
wait "$pid" || rc=$?
[ "$rc" == 0 ] || { cat err >&2; fail "an SQL step across a server's absence: exit $rc"; }
grep -q "connection lost, 08001" err || { cat err >&2; fail "the refused reconnections were not retried as a lost connection"; }
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM down")" 1 "the SQL step's rows after the server came back"
echo "ok: an SQL step reconnects across its server's absence"

# --- retry: {limit: 0}: the first termination fails the step (as before
# retries existed), with its cause; a later run resumes.
job none "{limit: 0}"
reset_table
"$NS" run none.yaml file=in.csv >out 2>err &
pid=$!
under_way
until [ "$(kill_backends)" -gt 0 ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
rc=0
wait "$pid" || rc=$?
[ "$rc" == 1 ] || { cat err >&2; fail "limit 0: exit $rc, expected 1"; }
grep -q "retry" err && { cat err >&2; fail "limit 0: a retry was made"; }
expect_exit 0 "$NS" run none.yaml file=in.csv
check_load "$(last_id)" "limit 0, then a second run"
echo "ok: limit 0 retries nothing"

# --- a stop during the wait (SIGTERM, or `nightshift stop ID` from another
# process) ends the run STOPPED, the next run completes
job stopping "{limit: 5, backoff: {initial: 30s, max: 30s}, jitter: false}"
stop_during_wait() { # stop_during_wait HOW: sigterm or command
    reset_table
    "$NS" run stopping.yaml file=in.csv how="$1" >out 2>err &
    pid=$!
    under_way
    until [ "$(kill_backends)" -gt 0 ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    for _ in $(seq 100); do grep -q "retry 1 of 5 in 30.0 s" err && break; sleep 0.1; done
    grep -q "retry 1 of 5 in 30.0 s" err || { cat err >&2; fail "stop ($1): no retry wait"; }
    t0=$(date +%s)
    if [ "$1" == sigterm ]; then kill -TERM "$pid"; else expect_exit 0 "$NS" stop "$(last_id)"; fi
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" == 3 ] || { cat err >&2; fail "stop ($1) during the wait: exit $rc, expected 3"; }
    [ $(($(date +%s) - t0)) -lt 10 ] || fail "stop ($1) during the wait took $(($(date +%s) - t0)) s"
    grep -q "while waiting to retry" err || { cat err >&2; fail "stop ($1): the message does not say so"; }
    expect_exit 0 "$NS" run stopping.yaml file=in.csv how="$1"
    check_load "$(last_id)" "stopped ($1) during the wait, then run again"
}
stop_during_wait sigterm
stop_during_wait command
echo "ok: a stop during the wait (SIGTERM, and nightshift stop)"

# --- the job file: what retry: accepts
bad() { # bad RETRY MESSAGE
    job bad "$1"
    expect_exit 2 "$NS" validate bad.yaml
    expect_err "$2"
}
bad "{limit: -1}" "steps[0].retry.limit: must be an integer from 0 to 1000000"
bad "{on: [23505x]}" "steps[0].retry.on[0]: '23505x' is not a failure nightshift can retry on"
bad "{backoff: {initial: 10s, max: 1s}}" "steps[0].retry.backoff: initial (10s) must not be longer than max (1s)"
bad "{backoff: {initial: 1e3}}" "steps[0].retry.backoff.initial: must be a duration"
bad "{backoff: {multiplier: 0.5}}" "steps[0].retry.backoff.multiplier: must be a number from 1 to 100"
bad "{jitter: sometimes}" "steps[0].retry.jitter"
bad "{tries: 3}" "steps[0].retry"
job good "{limit: 2, on: [transient, 23505, '23*', 503, SQLITE_BUSY, timeout]}"
expect_exit 0 "$NS" validate good.yaml
echo "ok: retry: keys checked"

# --- a frozen postmaster (SIGSTOP: it takes connections into its backlog and
# never answers): a connection gives up after its connect timeout, 10 s by
# default or what the URL says, instead of hanging `list` for ever.
postmaster=$(head -1 "$pgdir/data/postmaster.pid")
kill -STOP "$postmaster"
t0=$(date +%s.%N)
expect_exit 1 "$NS" list --repository "$TARGET_URL&connect_timeout=2"
t1=$(date +%s.%N)
expect_err "timeout expired"
expect_exit 1 "$NS" list --repository "$TARGET_URL"
t2=$(date +%s.%N)
expect_err "timeout expired"
kill -CONT "$postmaster"
python3 -c "
import sys
a, b, c = map(float, sys.argv[1:])
assert b - a < 6, f'connect_timeout=2 took {b - a:.1f} s'
assert 8 < c - b < 20, f'the default connect timeout took {c - b:.1f} s, not about 10'" "$t0" "$t1" "$t2" ||
    fail "connect timeouts"
# thawed, the same command connects (and finds no repository in that database)
expect_exit 1 "$NS" list --repository "$TARGET_URL"
expect_err "no nightshift repository"
echo "ok: a frozen postmaster: list gives up after the connect timeout"

#!/usr/bin/env bash
# nightshift recover (docs/operations.md, "Recover"): against a repository
# holding a dead execution (its process killed), one whose process is alive
# (frozen, SIGSTOP), one from another host whose heartbeat is older than the
# lease, one from another host within it, a failed and a completed one: only
# the dead ones are marked FAILED, each with why; --dry-run changes nothing;
# --job picks a job; a marked instance restarts and completes. On SQLite,
# and on PostgreSQL with RECOVER_REPO=pg (test_recover_pg.sh).
source "$(dirname "$0")/lib.sh"
if [ "${RECOVER_REPO:-sqlite}" == pg ]; then
    NIGHTSHIFT_REPOSITORY=$(pg_db ns_recover)
    export NIGHTSHIFT_REPOSITORY
fi
repo_sql() { # repo_sql SQL with TABLE for ns_job_execution
    local t=ns_job_execution
    [[ $NIGHTSHIFT_REPOSITORY == postgresql:* ]] && t=nightshift.ns_job_execution
    db_sql "$NIGHTSHIFT_REPOSITORY" "${1//TABLE/$t}"
}
export TARGET_URL="sqlite:$T/target.db"
sqlite3 "$T/target.db" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT);"
csv_rows 1 3000 > in.csv
load_job job.yaml rec k
load_job other.yaml rec-other k
status() { show_field "$1" "['status']"; }

# 1: dead (exits before its second commit, as a kill -9 would leave it)
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=2 "$NS" run job.yaml file=in.csv how=dead > /dev/null 2>&1 || true
# 2: alive, frozen before its first commit (in a target of its own: it
# holds that file's write lock)
sqlite3 "$T/frozen.db" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT);"
TARGET_URL="sqlite:$T/frozen.db" NIGHTSHIFT_TEST_PAUSE_BEFORE_COMMIT=1 \
    "$NS" run job.yaml file=in.csv how=alive > /dev/null 2>&1 &
frozen=$!
for _ in $(seq 100); do [ "$(status 2 2>/dev/null)" == STARTED ] && break; sleep 0.05; done
# 3: failed; 4: completed
printf 'id,v\nx,1\n' > bad.csv
"$NS" run job.yaml file=bad.csv how=failed > /dev/null 2>&1 || true
expect_exit 0 "$NS" run job.yaml file=in.csv how=done
# 5, 6: runs of another host, one silent past the lease, one within it
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=2 "$NS" run other.yaml file=in.csv how=far > /dev/null 2>&1 || true
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=2 "$NS" run other.yaml file=in.csv how=near > /dev/null 2>&1 || true
if [[ $NIGHTSHIFT_REPOSITORY == postgresql:* ]]; then
    repo_sql "UPDATE TABLE SET host = 'elsewhere', heartbeat = now() - interval '10 minutes' WHERE id = 5"
    repo_sql "UPDATE TABLE SET host = 'elsewhere', heartbeat = now() WHERE id = 6"
else
    repo_sql "UPDATE TABLE SET host = 'elsewhere', heartbeat = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-10 minutes') WHERE id = 5"
    repo_sql "UPDATE TABLE SET host = 'elsewhere', heartbeat = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = 6"
fi
for id in 1 2 5 6; do assert_eq "$(status $id)" STARTED "execution $id before recover"; done
assert_eq "$(status 3)" FAILED "execution 3"
assert_eq "$(status 4)" COMPLETED "execution 4"

# --dry-run: says, changes nothing
expect_exit 0 "$NS" recover --dry-run
grep -q "execution 1 (rec): process [0-9]* on .* is gone: would be marked FAILED" "$T/out" ||
    { cat "$T/out"; fail "dry run: execution 1 not named"; }
grep -q "execution 5 (rec-other): its heartbeat (from process [0-9]* on elsewhere) is 6[0-9][0-9] s old, past the lease of 60 s: would be" "$T/out" ||
    { cat "$T/out"; fail "dry run: execution 5 not named"; }
grep -q "2 executions would be marked FAILED (--dry-run: nothing changed)" "$T/out" ||
    { cat "$T/out"; fail "dry run: the count"; }
grep -qE "execution (2|6) " "$T/out" && { cat "$T/out"; fail "dry run: a live execution named"; }
for id in 1 5; do assert_eq "$(status $id)" STARTED "execution $id after --dry-run"; done

# --job: only that job's
expect_exit 0 "$NS" recover --job rec-other
grep -q "execution 5 (rec-other).*marked FAILED" "$T/out" || { cat "$T/out"; fail "--job: 5 not marked"; }
grep -q "execution 1 " "$T/out" && { cat "$T/out"; fail "--job: another job's execution marked"; }
assert_eq "$(status 5)" FAILED "execution 5 after recover --job rec-other"
assert_eq "$(status 1)" STARTED "execution 1 after recover --job rec-other"
show_eval 5 "d['exit_message']" | grep -q "marked FAILED by nightshift recover" ||
    fail "execution 5: the exit message does not say who marked it"
assert_eq "$(show_eval 5 "d['steps'][0]['status']")" FAILED "execution 5's step"

# all: 1 marked; 2 (frozen, alive) and 6 (heartbeat fresh) left alone
expect_exit 0 "$NS" recover
grep -q "1 execution marked FAILED" "$T/out" || { cat "$T/out"; fail "recover: the count"; }
for id in 1 3; do assert_eq "$(status $id)" FAILED "execution $id after recover"; done
for id in 2 6; do assert_eq "$(status $id)" STARTED "execution $id after recover"; done
assert_eq "$(status 4)" COMPLETED "execution 4 after recover"
expect_exit 0 "$NS" recover
grep -q "nothing to recover" "$T/out" || { cat "$T/out"; fail "recover twice: not nothing"; }

# a recovered instance restarts from its committed chunk and completes
expect_exit 0 "$NS" run job.yaml file=in.csv how=dead
expect_err "restarts execution 1"
kill -9 "$frozen" 2>/dev/null || true
wait "$frozen" 2>/dev/null || true
expect_exit 2 "$NS" recover extra
echo "recover: ok (${RECOVER_REPO:-sqlite})"

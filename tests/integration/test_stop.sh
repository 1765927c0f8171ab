#!/usr/bin/env bash
# Graceful stop: SIGTERM, and `nightshift stop ID` from another process, end
# the run after its current chunk as STOPPED (exit 3); run again, it resumes
# and every row is loaded exactly once.
source "$(dirname "$0")/lib.sh"
ROWS=300000
csv_rows 1 "$ROWS" > in.csv
export TARGET_DB="$T/target.db" TARGET_URL="sqlite:$T/target.db"
sqlite3 "$TARGET_DB" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT);"
load_job job.yaml stoppable k
WRITER_MODE=replace load_job replace.yaml stoppable-replace k
wait_started() { # waits until execution $1 has committed a chunk
    for _ in $(seq 200); do
        n=$("$NS" show "$1" --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["steps"][0]["commit_count"] if d["steps"] else 0)' 2>/dev/null || echo 0)
        [ "$n" -gt 0 ] && return 0
        sleep 0.05
    done
    fail "execution $1 never committed a chunk"
}
check() { # check HOW ID: stopped, then resumed to exactly all rows
    local rc=$1
    assert_eq "$rc" 3 "$2: exit status of a stopped run"
    assert_eq "$(show_field "$3" "['status']")" STOPPED "$2: status"
    local part
    part=$(sql "$TARGET_DB" "SELECT count(*) FROM k")
    [ "$part" -gt 0 ] && [ "$part" -lt "$ROWS" ] || fail "$2: stopped with $part rows"
    assert_eq "$((part % 100))" 0 "$2: stopped at a chunk boundary"
    expect_exit 0 "$NS" run job.yaml file=in.csv how="$2"
    expect_err "restarts execution $3"
    assert_eq "$(sql "$TARGET_DB" "SELECT count(*), count(DISTINCT id) FROM k")" "$ROWS|$ROWS" "$2: rows"
    sql "$TARGET_DB" "DELETE FROM k"
}

"$NS" run job.yaml file=in.csv how=sigterm > /dev/null 2> run.err & pid=$!
wait_started 1
kill -TERM $pid
rc=0; wait $pid || rc=$?
check $rc sigterm 1

"$NS" run job.yaml file=in.csv how=command > /dev/null 2> run.err & pid=$!
wait_started 3
expect_exit 0 "$NS" stop 3
expect_err "STOPPING"
rc=0; wait $pid || rc=$?
check $rc command 3
expect_exit 4 "$NS" stop 3
expect_err "is not running"

# A replace step is one transaction: stopped, it leaves the table as it was.
sql "$TARGET_DB" "INSERT INTO k VALUES (-1, 'old'), (-2, 'old')"
"$NS" run replace.yaml file=in.csv how=replace > /dev/null 2> run.err & pid=$!
for _ in $(seq 200); do # wait until its step has begun (a replace records counts only at its end)
    [ "$(show_field 5 "['steps'] and 1 or 0" 2>/dev/null || echo 0)" = 1 ] && break
    sleep 0.05
done
[ "$(show_field 5 "['status']")" = STARTED ] || fail "the replace run was not running when it was to be stopped"
kill -TERM $pid
rc=0; wait $pid || rc=$?
assert_eq "$rc" 3 "exit status of a stopped replace"
assert_eq "$(sql "$TARGET_DB" "SELECT group_concat(id) FROM k")" "-1,-2" "table after a stopped replace"
assert_eq "$(show_field 5 "['steps'][0]['write_count']")" 0 "write_count of a stopped replace"
echo "stop: ok"

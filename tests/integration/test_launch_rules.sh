#!/usr/bin/env bash
# The launch rules of docs/cli.md through the command: running refused,
# concurrent launches start once, failed restarts from its last chunk (run and
# restart ID), abandoned refused, non-restartable refused, --next.
source "$(dirname "$0")/lib.sh"
export TARGET_DB="$T/target.db"
sqlite3 "$TARGET_DB" "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
job() { # job NAME RESTARTABLE
    cat > "$1.yaml" <<EOY
job: $1
restartable: $2
params:
  file: {type: string, required: true}
connections:
  target: "sqlite:\${env.TARGET_DB}"
steps:
  - name: load
    chunk: 100
    reader: {csv: {path: "\${params.file}"}}
    writer: {table: {connection: target, name: t}}
EOY
}
job rules true
job once false
rows() { # rows FROM TO [BAD]: CSV with ids FROM..TO; id BAD has a NULL v
    echo "id,v"
    for i in $(seq "$1" "$2"); do
        if [ "$i" == "${3:-}" ]; then echo "$i,"; else echo "$i,x"; fi
    done
}
last_id() { "$NS" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])'; }

# Concurrent launches of one instance: exactly one runs, the other exits 4.
for round in 1 2 3; do
    mkfifo "fifo$round.csv"
    "$NS" run rules.yaml file="fifo$round.csv" > /dev/null 2> a.err & a=$!
    "$NS" run rules.yaml file="fifo$round.csv" > /dev/null 2> b.err & b=$!
    # The loser is refused at launch; the winner waits on the FIFO.
    for _ in $(seq 100); do
        if ! kill -0 $a 2>/dev/null || ! kill -0 $b 2>/dev/null; then break; fi
        sleep 0.1
    done
    rows $((round * 100000)) $((round * 100000 + 199)) > "fifo$round.csv"
    ra=0; rb=0
    wait $a || ra=$?
    wait $b || rb=$?
    codes=$(printf '%s\n' $ra $rb | sort | tr '\n' ' ')
    assert_eq "$codes" "0 4 " "exit codes of two simultaneous launches (round $round)"
    grep -q "already running" a.err b.err || fail "the refusal does not say why"
done
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM t')" 600 "rows after three rounds"

# A failed run restarts from its last committed chunk.
rows 1 1000 550 > in.csv
expect_exit 1 "$NS" run rules.yaml file=in.csv
expect_err "null value in column \"v\""
failed=$(last_id)
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM t WHERE id <= 1000')" 500 "rows committed before the failure"
# The failed execution's counters describe what the target holds.
assert_eq "$(show_field "$failed" "['steps'][0]['read_count']")" 500 "read_count of the failed run"
assert_eq "$(show_field "$failed" "['steps'][0]['write_count']")" 500 "write_count of the failed run"
assert_eq "$(show_field "$failed" "['steps'][0]['commit_count']")" 5 "commit_count of the failed run"
assert_eq "$(show_field "$failed" "['steps'][0]['rollback_count']")" 1 "rollback_count of the failed run"
rows 1 1000 > in.csv
expect_exit 0 "$NS" run rules.yaml file=in.csv
expect_err "execution $((failed + 1)) restarts execution $failed"
expect_err "resuming after chunk 5 at line 502"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM t WHERE id <= 1000')" 1000 "rows after the restart"
assert_eq "$(show_field $((failed + 1)) "['steps'][0]['read_count']")" 500 "rows read by the restart"
assert_eq "$(show_field $((failed + 1)) "['restart_of']")" "$failed" "restart_of"
expect_exit 4 "$NS" run rules.yaml file=in.csv
expect_err "already completed"
expect_exit 4 "$NS" restart "$((failed + 1))"

# restart ID does the same, from any directory: relative paths (file=in2.csv)
# are resolved against the directory the execution was launched from.
rows 5001 5300 5150 > in2.csv
expect_exit 1 "$NS" run rules.yaml file=in2.csv
failed=$(last_id)
rows 5001 5300 > in2.csv
mkdir -p elsewhere
expect_exit 0 sh -c "cd elsewhere && exec '$NS' restart $failed"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM t WHERE id BETWEEN 5001 AND 5300')" 300 "rows after restart ID"

# Abandoned: never restarted.
rows 6001 6300 6150 > in3.csv
expect_exit 1 "$NS" run rules.yaml file=in3.csv
failed=$(last_id)
expect_exit 0 "$NS" abandon "$failed"
expect_exit 4 "$NS" run rules.yaml file=in3.csv
expect_err "abandoned"
expect_exit 4 "$NS" restart "$failed"
expect_exit 4 "$NS" abandon "$failed"

# Not restartable: a failed instance is refused; --next starts a new one.
rows 7001 7300 7150 > in4.csv
expect_exit 1 "$NS" run once.yaml file=in4.csv
expect_exit 4 "$NS" run once.yaml file=in4.csv
expect_err "not restartable"
rows 7001 7300 > in4.csv
sql "$TARGET_DB" "DELETE FROM t WHERE id BETWEEN 7001 AND 7300" # the failed run's first chunk
expect_exit 0 "$NS" run once.yaml file=in4.csv --next
assert_eq "$(show_field "$(last_id)" "['params']['run.id']")" 1 "run.id of --next"
sql "$TARGET_DB" "DELETE FROM t WHERE id <= 1000"
expect_exit 0 "$NS" run rules.yaml file=in.csv --next
assert_eq "$(show_field "$(last_id)" "['params']['run.id']")" 1 "run.id is counted per job"
echo "launch rules: ok"

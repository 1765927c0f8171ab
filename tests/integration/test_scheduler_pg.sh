#!/usr/bin/env bash
# Two and then three schedulers sharing one PostgreSQL repository, with no
# leader: over many ticks each tick is started exactly once (its row is the
# claim, and the run's launch turns it STARTED in the transaction that
# creates its execution); a scheduler killed with kill -9 leaves the others
# ticking.
source "$(dirname "$0")/lib.sh"
REPO=$(pg_db ns_sched)
export NIGHTSHIFT_REPOSITORY=$REPO
psql_repo() { psql "$REPO" -qAtX -c "$1"; }
ts() { date -u -d "$1" +%s; }
cat > every.yaml <<EOF
job: every
params:
  at: {type: timestamp, default: "2000-01-01T00:00:00"}
connections:
  db: "sqlite:$T/x.db"
steps:
  - name: s
    sql: {connection: db, script: "SELECT 1"}
schedule:
  cron: "* * * * *"
  params: {at: scheduled}
  overlap: allow
EOF
expect_exit 0 "$NS" validate every.yaml
# one clock for all: a minute is 0.25 s
CLOCK="$(ts 2024-03-09T00:00:30Z) 240 $(date +%s.%N)"
pids=()
start() { NIGHTSHIFT_TEST_CLOCK=$CLOCK "$NS" scheduler every.yaml >> "$T/s$1.log" 2>&1 & pids+=($!); }
start 1
start 2
sleep 8
start 3
sleep 8
kill -9 "${pids[0]}"
sleep 6
for p in "${pids[@]:1}"; do kill -TERM "$p"; done
for p in "${pids[@]:1}"; do wait "$p" || fail "a scheduler exited $? after SIGTERM"; done
wait "${pids[0]}" 2> /dev/null || true
# Ticks that a run was started for: every one once, with one execution.
started=$(psql_repo "SELECT count(*) FROM nightshift.ns_tick WHERE state = 'STARTED'")
[ "$started" -ge 40 ] || { tail -30 "$T"/s*.log; fail "only $started ticks started"; }
assert_eq "$(psql_repo "SELECT count(*) FROM nightshift.ns_job_execution")" "$started" "one execution per started tick"
assert_eq "$(psql_repo "SELECT count(DISTINCT scheduled_at) FROM nightshift.ns_job_execution")" "$started" "no tick started twice"
assert_eq "$(psql_repo "SELECT count(*) FROM nightshift.ns_job_execution e JOIN nightshift.ns_tick t ON t.execution_id = e.id WHERE e.scheduled_at <> to_char(to_timestamp(t.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.000\"Z\"')")" 0 \
    "each execution carries its tick's time"
# No minute was lost between the first and the last tick.
python3 - "$(psql_repo "SELECT at, state FROM nightshift.ns_tick ORDER BY at")" <<'PY' || fail "ticks lost or doubled"
import sys
rows = [l.split("|") for l in sys.argv[1].split("\n") if l]
ats = [int(a) for a, _ in rows]
assert ats == list(range(ats[0], ats[-1] + 60, 60)), "a minute without its tick"
assert all(s == "STARTED" for _, s in rows[:-3]), rows[-8:]
PY
# More than one scheduler did the work.
owners=$(psql_repo "SELECT count(DISTINCT claimed_by) FROM nightshift.ns_tick")
[ "$owners" -ge 2 ] || fail "a single scheduler claimed every tick ($owners)"
assert_eq "$(psql_repo "SELECT count(*) FROM nightshift.ns_job_execution WHERE status NOT IN ('COMPLETED', 'STOPPED')")" 0 "every run ended"
echo "scheduler on PostgreSQL: $started ticks started once each, by $owners schedulers"

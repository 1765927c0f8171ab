#!/usr/bin/env bash
# nightshift scheduler with a fast injected clock (NIGHTSHIFT_TEST_CLOCK,
# test builds): ticks exactly once, params resolved in the zone at the
# scheduled time, DST, each misfire policy after days of downtime, each
# overlap policy with a slow job, SIGHUP with a broken file, SIGTERM
# mid-run, kill -9 of the scheduler mid-run and its restart.
source "$(dirname "$0")/lib.sh"
ts() { date -u -d "$1" +%s; }
# sched START SPEED ARGS...: a scheduler in the background whose clock
# starts at START (a date) and runs SPEED times as fast; its log in $T/sched.log.
sched() {
    local start=$1 speed=$2
    shift 2
    NIGHTSHIFT_TEST_CLOCK="$(ts "$start") $speed $(date +%s.%N)" "$NS" scheduler "$@" \
        >> "$T/sched.log" 2>&1 &
    SPID=$!
}
stop_sched() {
    kill -TERM "$SPID" 2> /dev/null || true
    local rc=0
    wait "$SPID" || rc=$?
    [ "$rc" = 0 ] || { cat "$T/sched.log" >&2; fail "the scheduler exited $rc after SIGTERM"; }
}
# until_sql SQL WANT SECONDS: waits for the repository to answer WANT.
until_sql() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(sql "$T/repo.db" "$1" 2> /dev/null)" == "$2" ] && return 0
        sleep 0.1
    done
    cat "$T/sched.log" >&2
    fail "waited $3 s for '$1' to be '$2', it is '$(sql "$T/repo.db" "$1")'"
}
ticks() { sql "$T/repo.db" "SELECT state, count(*) FROM ns_tick WHERE job_name = '$1' GROUP BY state ORDER BY state" | tr '\n' ' '; }
# A job that records each run (day, at) in its own SQLite file; SLOW seconds of work.
mkjob() { # NAME CRON ZONE [MORE SCHEDULE KEYS] [SLOW]
    cat > "$1.yaml" <<EOF2
job: $1
params:
  day: {type: date, default: yesterday}
  at: {type: timestamp, default: "2000-01-01T00:00:00"}
connections:
  db: "sqlite:$T/$1.db"
steps:
  - name: work
    sql:
      connection: db
      script: |
        CREATE TABLE IF NOT EXISTS runs (day TEXT, at TEXT);
        INSERT INTO runs VALUES (:day, :at);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${5:-1})
        SELECT count(*) FROM c;
schedule:
  cron: "$2"
  timezone: $3
  ${4:-}
EOF2
}

# --- 1. Daily at 03:00 in Seoul: one run per tick, `yesterday` of the
# scheduled date in Seoul, the scheduled time on the execution.
mkjob daily "0 3 * * *" Asia/Seoul "params: {at: scheduled}"
expect_exit 0 "$NS" validate daily.yaml
sched "2024-03-09T06:00:00Z" 36000 daily.yaml     # 15:00 KST; a day is 2.4 s
until_sql "SELECT count(*) FROM ns_tick WHERE job_name = 'daily' AND state = 'STARTED'" 3 30
until_sql "SELECT count(*) FROM ns_job_execution WHERE status = 'COMPLETED'" 3 30
stop_sched
assert_eq "$(sql daily.db "SELECT day || ' ' || at FROM runs ORDER BY day LIMIT 3" | tr '\n' ,)" \
    "2024-03-09 2024-03-10T03:00:00,2024-03-10 2024-03-11T03:00:00,2024-03-11 2024-03-12T03:00:00," \
    "each run's day is yesterday in Seoul at its scheduled time"
assert_eq "$(sql repo.db "SELECT count(*), count(DISTINCT at) FROM ns_tick")" \
    "$(sql repo.db "SELECT count(*), count(*) FROM ns_tick")" "a tick per instant"
assert_eq "$(sql repo.db "SELECT count(*) FROM ns_job_execution e JOIN ns_tick t ON t.execution_id = e.id WHERE e.scheduled_at = strftime('%Y-%m-%dT%H:%M:%S.000Z', t.at, 'unixepoch')")" \
    "$(sql repo.db "SELECT count(*) FROM ns_tick WHERE state = 'STARTED'")" "each execution carries its tick's time"
first=$(sql repo.db "SELECT min(execution_id) FROM ns_tick WHERE state = 'STARTED'")
"$NS" show "$first" > show.out
grep -q "scheduled   2024-03-09 18:00:00" show.out || { cat show.out; fail "show names the scheduled time"; }
[ "$(show_eval "$first" 'd["scheduled_at"]')" = "2024-03-09T18:00:00.000Z" ] || fail "show --json scheduled_at"
"$NS" list --job daily > list.out
grep -q "SCHEDULED" list.out && grep -q "2024-03-09 18:00:00 UTC" list.out || { cat list.out; fail "list shows the scheduled time"; }
grep -q 'job daily: "0 3 \* \* \*" in Asia/Seoul' sched.log || fail "the log names the schedule"
grep -q "job daily: tick 2024-03-10 03:00:00 KST: run started" sched.log || { cat sched.log; fail "log: run started"; }
grep -q "run ended, exit 0 (completed)" sched.log || fail "log: run ended"

# --- 2. Restarted later: after its last tick, what came due meanwhile by misfire:.
# run_once (the default): the latest runs, the others are MISSED.
n0=$(sql repo.db "SELECT count(*) FROM ns_tick WHERE job_name = 'daily'")
last=$(sql repo.db "SELECT max(at) FROM ns_tick WHERE job_name = 'daily'")
: > sched.log
sched "$(date -u -d "@$((last + 5 * 86400 + 3600))" +%Y-%m-%dT%H:%M:%SZ)" 1 daily.yaml  # 5 days on, 1 h after the tick: within the deadline
until_sql "SELECT count(*) FROM ns_tick WHERE job_name = 'daily' AND at > $last" 5 20
until_sql "SELECT count(*) FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id WHERE t.at > $last AND e.status = 'COMPLETED'" 1 20
stop_sched
assert_eq "$(sql repo.db "SELECT state FROM ns_tick WHERE job_name = 'daily' AND at > $last ORDER BY at" | tr '\n' ' ')" \
    "MISSED MISSED MISSED MISSED STARTED " "run_once: the latest of 5 ran"
grep -q "4 ticks missed (missed: no scheduler was running (misfire: run_once ran the latest)); 4 recorded" sched.log ||
    { cat sched.log; fail "the log counts the missed ticks"; }

# skip: nothing runs after downtime past the deadline.
mkjob skipper "0 * * * *" UTC "misfire: skip"
sched "2024-03-09T00:30:00Z" 1 skipper.yaml
sleep 1
stop_sched
sql repo.db "INSERT INTO ns_tick (job_name, at, local_time, state, claimed_by, claimed_at) VALUES ('skipper', $(ts 2024-03-09T00:00:00Z), '2024-03-09T00:00:00', 'STARTED', 'test', 0)"
sched "2024-03-09T05:30:00Z" 1 skipper.yaml   # 00:00 was the last: 01:00..05:00 due, the latest 30 min ago (deadline 1h)
until_sql "SELECT count(*) FROM ns_tick WHERE job_name = 'skipper'" 6 20
until_sql "SELECT count(*) FROM ns_tick WHERE job_name = 'skipper' AND state = 'STARTED'" 2 20
stop_sched
assert_eq "$(ticks skipper)" "MISSED|4 STARTED|2 " "skip: the 4 older ticks MISSED, the latest (within its deadline) ran"

# catch_up with max 3: the 3 latest of 6 run, oldest first; the rest MISSED.
mkjob catcher "0 * * * *" UTC "misfire: {policy: catch_up, max: 3}"
sql repo.db "INSERT INTO ns_tick (job_name, at, local_time, state, claimed_by, claimed_at) VALUES ('catcher', $(ts 2024-03-09T00:00:00Z), '2024-03-09T00:00:00', 'STARTED', 'test', 0)"
sched "2024-03-09T06:30:00Z" 1 catcher.yaml
until_sql "SELECT count(*) FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id WHERE t.job_name = 'catcher' AND e.status = 'COMPLETED'" 3 30
stop_sched
assert_eq "$(sql repo.db "SELECT state FROM ns_tick WHERE job_name = 'catcher' AND at > $(ts 2024-03-09T00:00:00Z) ORDER BY at" | tr '\n' ' ')" \
    "MISSED MISSED MISSED STARTED STARTED STARTED " "catch_up max 3"
assert_eq "$(sql repo.db "SELECT group_concat(x, ' ') FROM (SELECT e.id < lead(e.id) OVER (ORDER BY t.at) AS x FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id WHERE t.job_name = 'catcher' AND t.state = 'STARTED' AND t.at > $(ts 2024-03-09T00:00:00Z))")" \
    "1 1" "catch-up ran oldest first"
assert_eq "$(sql catcher.db "SELECT count(*) FROM runs")" 3 "3 catch-up runs"

# --- 3. DST: 02:30 in New York on 2024-03-10 fires at 03:00 EDT (gap: next).
mkjob ny "30 2 * * *" America/New_York
sched "2024-03-09T08:00:00Z" 36000 ny.yaml
until_sql "SELECT count(*) FROM ns_tick WHERE job_name = 'ny'" 3 30
stop_sched
assert_eq "$(sql repo.db "SELECT group_concat(strftime('%Y-%m-%dT%H:%M', at, 'unixepoch') || '=' || local_time, ' ') FROM (SELECT * FROM ns_tick WHERE job_name = 'ny' ORDER BY at LIMIT 3)")" \
    "2024-03-10T07:00=2024-03-10T02:30:00 2024-03-11T06:30=2024-03-11T02:30:00 2024-03-12T06:30=2024-03-12T02:30:00" \
    "the gap's tick at 03:00 EDT (07:00 UTC)"

# --- 4. Overlap with a slow job (about 2-3 s a run): a tick every 10 minutes = 1 s.
slow=6000000
mkjob forbid "*/10 * * * *" UTC "overlap: forbid" $slow
sched "2024-03-09T00:00:30Z" 600 forbid.yaml
until_sql "SELECT count(*) >= 6 FROM ns_tick WHERE job_name = 'forbid'" 1 40
stop_sched
[ "$(sql repo.db "SELECT count(*) FROM ns_tick WHERE job_name = 'forbid' AND state = 'SKIPPED' AND reason LIKE 'overlap: forbid: %still%'")" -ge 1 ] ||
    { ticks forbid; cat sched.log; fail "forbid: no tick skipped while a run was going"; }
# (a run still going at the SIGTERM is cut short, its statement undone: STOPPED)
assert_eq "$(sql forbid.db "SELECT count(*) FROM runs")" "$(sql repo.db "SELECT count(*) FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id WHERE t.job_name = 'forbid' AND t.state = 'STARTED' AND e.status = 'COMPLETED'")" \
    "forbid: one run per completed tick"
assert_eq "$(sql repo.db "SELECT count(*) FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id WHERE t.job_name = 'forbid' AND t.state = 'STARTED' AND e.status NOT IN ('COMPLETED', 'STOPPED')")" 0 \
    "forbid: every started run completed, or stopped with the scheduler"

mkjob queue "*/10 * * * *" UTC "overlap: queue_one" $slow
sched "2024-03-09T00:00:30Z" 600 queue.yaml
until_sql "SELECT count(*) >= 7 FROM ns_tick WHERE job_name = 'queue'" 1 40
stop_sched
[ "$(sql repo.db "SELECT count(*) FROM ns_tick WHERE job_name = 'queue' AND state = 'SKIPPED' AND reason LIKE 'overlap: queue_one: %'")" -ge 1 ] ||
    { ticks queue; cat sched.log; fail "queue_one: no tick skipped"; }
grep -q "job queue: tick .*: waits for the run before it (overlap: queue_one)" sched.log || { cat sched.log; fail "queue_one: none waited"; }
# a queued tick ran after the run before it, not beside it
python3 - "$T/repo.db" <<'PY' || fail "queue_one: runs overlapped"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT e.started_at, e.ended_at FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id"
                  " WHERE t.job_name = 'queue' AND e.ended_at IS NOT NULL ORDER BY e.started_at").fetchall()
assert len(rows) >= 2, rows
for (s1, e1), (s2, e2) in zip(rows, rows[1:]):
    assert s2 >= e1, (s1, e1, s2, e2)
PY

mkjob allow "*/10 * * * *" UTC "overlap: allow
  params: {at: scheduled}" $slow
sched "2024-03-09T00:00:30Z" 600 allow.yaml
until_sql "SELECT count(*) >= 4 FROM ns_tick WHERE job_name = 'allow' AND state = 'STARTED'" 1 40
stop_sched
python3 - "$T/repo.db" <<'PY' || fail "allow: no runs side by side"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT e.started_at, coalesce(e.ended_at, 'z') FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id"
                  " WHERE t.job_name = 'allow' ORDER BY e.started_at").fetchall()
assert any(s2 < e1 for (s1, e1), (s2, e2) in zip(rows, rows[1:])), rows
PY
assert_eq "$(sql repo.db "SELECT count(*) FROM ns_tick WHERE job_name = 'allow' AND state = 'SKIPPED'")" 0 "allow skips nothing"

# A queued tick past its deadline is MISSED (and said); jitter delays starts.
mkjob late "*/10 * * * *" UTC "overlap: queue_one
  deadline: 3m" $slow
: > sched.log
sched "2024-03-09T00:00:30Z" 600 late.yaml
until_sql "SELECT count(*) >= 1 FROM ns_tick WHERE job_name = 'late' AND state = 'MISSED'" 1 40
stop_sched
assert_eq "$(sql repo.db "SELECT DISTINCT reason FROM ns_tick WHERE job_name = 'late' AND state = 'MISSED'")" \
    "missed: not started by its deadline (180s)" "a queued tick past its deadline"
mkjob jit "0 * * * *" UTC "jitter: 30m"
: > sched.log
sched "2024-03-09T00:59:00Z" 600 jit.yaml
until_sql "SELECT count(*) >= 3 FROM ns_tick WHERE job_name = 'jit' AND state = 'STARTED'" 1 40
stop_sched
python3 - "$T/sched.log" <<'PY' || fail "jitter"
import re, sys
from datetime import datetime
d = []
for l in open(sys.argv[1]):
    m = re.match(r"(\S+) scheduler: job jit: tick (\S+ \S+) UTC: run started", l)
    if m:
        t = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        tick = datetime.fromisoformat(m.group(2) + "+00:00").timestamp()
        d.append(t - tick)
assert len(d) >= 3 and all(0 <= x <= 1800 + 60 for x in d) and max(d) > 60, d
PY

# --- 5. SIGHUP with one broken file: reported, the other job keeps its ticks.
mkdir hup
mkjob hup/a "*/10 * * * *" UTC
mkjob hup/b "*/10 * * * *" UTC
sed -i 's/^job: hup\/a/job: hup-a/' hup/a.yaml
sed -i 's/^job: hup\/b/job: hup-b/' hup/b.yaml
: > sched.log
sched "2024-03-09T00:00:30Z" 600 hup
until_sql "SELECT count(*) >= 2 FROM ns_tick WHERE job_name = 'hup-b'" 1 30
echo "steps: [broken" >> hup/a.yaml
kill -HUP "$SPID"
sleep 1
before=$(sql repo.db "SELECT count(*) FROM ns_tick WHERE job_name = 'hup-b'")
until_sql "SELECT count(*) >= $((before + 2)) FROM ns_tick WHERE job_name = 'hup-b'" 1 30
kill -0 "$SPID" || fail "the scheduler died on SIGHUP"
stop_sched
grep -q "reloading the job files" sched.log || fail "SIGHUP not logged"
grep -q "hup/a.yaml: not loaded: " sched.log || { cat sched.log; fail "the broken file is not reported"; }

# A job loading a big CSV in chunks: a stop ends it at a chunk boundary.
python3 -c "
import sys
with open('big.csv', 'w') as f:
    f.write('id,name\n')
    for i in range(1500000):
        f.write(f'{i},name{i}\n')
"
mkchunk() { # NAME
    cat > "$1.yaml" <<EOF2
job: $1
connections:
  db: "sqlite:$T/$1.db"
steps:
  - name: load
    reader: {csv: {path: "$T/big.csv"}}
    chunk: 2000
    writer: {table: {connection: db, name: t}}
schedule: {cron: "0 * * * *"}
EOF2
    sql "$1.db" "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"
}

# --- 6. SIGTERM mid-run: the run stops, the scheduler waits for it and exits 0.
mkchunk term
: > sched.log
sched "2024-03-09T00:59:50Z" 1 term.yaml
until_sql "SELECT count(*) FROM ns_job_execution e JOIN ns_tick t ON t.execution_id = e.id WHERE t.job_name = 'term' AND e.status = 'STARTED'" 1 30
sleep 1
t0=$(date +%s)
stop_sched
[ $(($(date +%s) - t0)) -lt 20 ] || fail "SIGTERM took too long"
assert_eq "$(sql repo.db "SELECT e.status FROM ns_job_execution e JOIN ns_tick t ON t.execution_id = e.id WHERE t.job_name = 'term'")" STOPPED "the run stopped"
grep -q "stopping: 1 run asked to stop" sched.log || { cat sched.log; fail "log: stopping"; }
grep -q "run ended, exit 3 (stopped)" sched.log || { cat sched.log; fail "log: the run stopped"; }

# --- 7. kill -9 of the scheduler mid-run: the run stops with it; the next
# scheduler runs the tick again (within its deadline) and it completes.
mkchunk killed
: > sched.log
sched "2024-03-09T00:59:55Z" 1 killed.yaml
until_sql "SELECT count(*) FROM ns_job_execution e JOIN ns_tick t ON t.execution_id = e.id WHERE t.job_name = 'killed' AND e.status = 'STARTED'" 1 30
sleep 0.5
kill -9 "$SPID"
wait "$SPID" 2> /dev/null || true
until_sql "SELECT e.status IN ('STOPPED', 'FAILED') FROM ns_job_execution e JOIN ns_tick t ON t.execution_id = e.id WHERE t.job_name = 'killed'" 1 30
sched "2024-03-09T01:05:00Z" 1 killed.yaml
until_sql "SELECT e.status FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id WHERE t.job_name = 'killed'" COMPLETED 60
stop_sched
grep -q "did not complete: run again" sched.log || { cat sched.log; fail "log: run again"; }
assert_eq "$(sql repo.db "SELECT count(*) FROM ns_job_execution e JOIN ns_job_instance i ON i.id = e.instance_id WHERE i.job_name = 'killed'")" 2 "two executions: the stopped one and its restart"
assert_eq "$(sql repo.db "SELECT count(*) FROM ns_tick WHERE job_name = 'killed'")" 1 "one tick"
assert_eq "$(sql killed.db "SELECT count(*), count(DISTINCT id) FROM t")" "1500000|1500000" "every row once, after the restart"
assert_eq "$(sql repo.db "SELECT e.restart_of IS NOT NULL FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id WHERE t.job_name = 'killed'")" 1 "the tick's run restarted the stopped one"

# And killed together with its run (kill -9 of both): the next start marks the
# dead run FAILED (as recover does) and runs the tick again.
mkchunk both
: > sched.log
sched "2024-03-09T00:59:55Z" 1 both.yaml
until_sql "SELECT count(*) FROM ns_job_execution e JOIN ns_tick t ON t.execution_id = e.id WHERE t.job_name = 'both' AND e.status = 'STARTED'" 1 30
sleep 0.5
pkill -9 -P "$SPID"
kill -9 "$SPID"
wait "$SPID" 2> /dev/null || true
assert_eq "$(sql repo.db "SELECT e.status FROM ns_job_execution e JOIN ns_tick t ON t.execution_id = e.id WHERE t.job_name = 'both'")" STARTED "a dead run is still marked running"
sched "2024-03-09T01:05:00Z" 1 both.yaml
until_sql "SELECT e.status FROM ns_tick t JOIN ns_job_execution e ON e.id = t.execution_id WHERE t.job_name = 'both'" COMPLETED 60
stop_sched
assert_eq "$(sql repo.db "SELECT group_concat(e.status, ' ') FROM ns_job_execution e JOIN ns_job_instance i ON i.id = e.instance_id WHERE i.job_name = 'both' ORDER BY e.id")" \
    "FAILED COMPLETED" "the dead run marked FAILED, then restarted"
assert_eq "$(sql both.db "SELECT count(*), count(DISTINCT id) FROM t")" "1500000|1500000" "every row once"

# --- 8. A minutely job down for three days: no flood; the MISSED rows capped at 1000, counted.
mkjob minutely "* * * * *" UTC "misfire: skip"
sql repo.db "INSERT INTO ns_tick (job_name, at, local_time, state, claimed_by, claimed_at) VALUES ('minutely', $(ts 2024-03-06T00:00:00Z), '2024-03-06T00:00:00', 'STARTED', 'test', 0)"
: > sched.log
sched "2024-03-09T00:00:30Z" 1 minutely.yaml
until_sql "SELECT count(*) FROM ns_tick WHERE job_name = 'minutely' AND state = 'STARTED'" 2 60
stop_sched
grep -q "job minutely: 4319 ticks missed (missed: no scheduler was running (misfire: skip)); 1000 recorded (the others: by another scheduler, or beyond the latest 1000)" sched.log ||
    { cat sched.log; fail "the flood of missed ticks is not capped and counted"; }
assert_eq "$(ticks minutely)" "MISSED|1000 STARTED|2 " "1000 MISSED rows, the latest tick ran"

# --- 9. A run that cannot start (its job needs a variable that is not set):
# the tick is given up as SKIPPED, saying why; the scheduler goes on.
mkjob needy "*/10 * * * *" UTC
sed -i "s|sqlite:$T/needy.db|\${env.NEEDY_DB}|" needy.yaml
: > sched.log
sched "2024-03-09T00:09:58Z" 60 needy.yaml
until_sql "SELECT count(*) >= 2 FROM ns_tick WHERE job_name = 'needy' AND state = 'SKIPPED'" 1 30
stop_sched
grep -q "NEEDY_DB" sched.log || { cat sched.log; fail "the run's error is not in the log"; }
assert_eq "$(sql repo.db "SELECT DISTINCT reason FROM ns_tick WHERE job_name = 'needy'")"     "the run exited 2 before it started (see the scheduler's log)" "the reason of a tick given up"

# --- usage
expect_exit 2 "$NS" scheduler
expect_err "name job files or folders"
echo "scheduler: ok"

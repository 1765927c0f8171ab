#!/usr/bin/env bash
# The job repository on PostgreSQL: ten processes launching one instance at
# the same moment start it once (the other nine exit 4); the statements a run
# issues do not grow with history (counted by the server, not by us); list,
# show and stop work through a Unix-socket URL.
source "$(dirname "$0")/lib.sh"
REPO=$(pg_db ns_repo_test)
export NIGHTSHIFT_REPOSITORY="$REPO" TARGET_DB="$T/target.db" TARGET_URL="sqlite:$T/target.db"
sqlite3 "$TARGET_DB" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT);"
load_job job.yaml pgrepo k

# Ten simultaneous launches of one instance.
mkfifo race.csv
pids=()
for i in $(seq 10); do
    "$NS" run job.yaml file=race.csv > /dev/null 2> "race-$i.err" & pids+=($!)
done
for _ in $(seq 200); do # nine are refused at launch; the winner waits on the FIFO
    n=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done
    [ $n -le 1 ] && break
    sleep 0.05
done
csv_rows 1 500 > race.csv
codes=()
for p in "${pids[@]}"; do rc=0; wait "$p" || rc=$?; codes+=($rc); done
assert_eq "$(printf '%s\n' "${codes[@]}" | sort | uniq -c | awk '{print $1 "x" $2}' | tr '\n' ' ')" \
    "1x0 9x4 " "exit codes of ten simultaneous launches"
assert_eq "$(grep -l 'already running' race-*.err | wc -l)" 9 "refusals that say why"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM k')" 500 "rows loaded by the winner"
assert_eq "$(psql "$REPO" -Atc 'SELECT count(*) FROM nightshift.ns_job_execution')" 1 "executions"

# Statements per run, counted in the server's log: the same with 10,000 past
# executions as with one.
psql "$REPO" -qc "ALTER DATABASE ns_repo_test SET log_statement = 'all'"
csv_rows 1 300 > small.csv
count_statements() { # count_statements TAG HOW: statements of one run tagged TAG
    # Tags unique to this test run: the server's log outlives it.
    "$NS" run job.yaml file=small.csv how="$2" --repository "$REPO&application_name=$1$$" > /dev/null 2>&1 ||
        fail "run $1 failed"
    sleep 0.2 # the log is written asynchronously
    grep -cE "\] $1$$ LOG:  (statement|execute)" "$(pg_log)"
}
before=$(count_statements nsfew few)
psql "$REPO" -q <<'SQL'
INSERT INTO nightshift.ns_job_instance (job_name, job_key)
    SELECT 'pgrepo', md5(i::text) FROM generate_series(1, 10000) i;
INSERT INTO nightshift.ns_job_execution (instance_id, status, exit_code, host, pid)
    SELECT id, 'COMPLETED', 'COMPLETED', 'old-host', 1 FROM nightshift.ns_job_instance
    WHERE job_key <> '' AND id > 2;
INSERT INTO nightshift.ns_step_execution (execution_id, instance_id, step_name, status)
    SELECT id, instance_id, 'load', 'COMPLETED' FROM nightshift.ns_job_execution WHERE host = 'old-host';
ANALYZE;
SQL
past=$(psql "$REPO" -Atc "SELECT count(*) FROM nightshift.ns_job_execution")
[ "$past" -ge 10000 ] || fail "only $past past executions"
after=$(count_statements nsmany many)
[ "$before" -gt 0 ] || fail "no statements counted: is log_statement working?"
assert_eq "$after" "$before" "statements of one run with $past past executions vs with 2"
echo "statements per run: $before (2 past executions), $after ($past past executions)"
# Each chunk adds at most two: 300 more rows are 3 more chunks of 100.
csv_rows 1 600 > small.csv
more=$(count_statements nsmore more)
[ $((more - after)) -le 6 ] || fail "3 more chunks cost $((more - after)) statements (at most 6)"
echo "statements: $after for 3 chunks, $more for 6 chunks"

# list/show/stop through the Unix-socket URL.
expect_exit 0 "$NS" list --limit 3
grep -q pgrepo "$T/out" || fail "list does not show the job"
expect_exit 0 "$NS" show 1 --json
grep -q '"status": "COMPLETED"' "$T/out" || fail "show does not show the run"
expect_exit 4 "$NS" stop 1
expect_err "is not running (status COMPLETED)"
expect_exit 1 "$NS" list --repository "postgresql:///nosuchdb?host=$(cat "$NS_PG_STATE/dir")&port=54329&user=postgres"
expect_err 'database "nosuchdb" does not exist'
expect_exit 1 "$NS" list --repository "postgresql://u:hunter4@localhost:1/x"
grep -q hunter4 "$T/err" && fail "a password leaked into an error: $(cat "$T/err")"
expect_err "postgresql://u:***@localhost:1/x: cannot connect"

# Target in the repository's database (same server, database and user): the
# writer works through the repository's connection, so each chunk's rows and
# its step record commit in one transaction (docs/internals.md, "Exactly-once restart"). Told from
# the server's log: every COPY comes from the repository's session, and each
# is followed by the step's record before its COMMIT.
psql "$REPO" -qc "CREATE TABLE k (id integer NOT NULL, v text)"
TARGET_URL="$REPO&application_name=nstarget$$" "$NS" run job.yaml file=small.csv how=shared \
    --repository "$REPO&application_name=nsshared$$" > /dev/null 2>&1 || fail "shared run failed"
sleep 0.2
assert_eq "$(psql "$REPO" -Atc 'SELECT count(*) FROM k')" 600 "rows loaded through the shared connection"
python3 - "$(pg_log)" "$$" <<'PY' || fail "rows and step record are not in one transaction"
import re, sys
tag = sys.argv[2]
lines = [l for l in open(sys.argv[1], errors="replace") if re.search(r"\] ns(shared|target)" + tag + " LOG:  (statement|execute)", l)]
copies = [l for l in lines if "COPY " in l and " k " in l]
assert copies, "no COPY in the log"
assert all(f" nsshared{tag} LOG" in l for l in copies), "a COPY ran on the writer's own connection"
chunks, state = 0, None
for l in lines:
    if f" nsshared{tag} LOG" not in l:
        continue
    if "COPY " in l: state = "copy"
    elif "ns_step_execution SET" in l and state == "copy": state = "recorded"
    elif re.search(r"(statement|execute <unnamed>): COMMIT", l) and state:
        assert state == "recorded", "a chunk committed without its step record"
        chunks += 1; state = None
assert chunks == 6, f"{chunks} chunks committed with their record, expected 6"
PY
echo "target in the repository's database: one transaction per chunk"

# The heartbeat is renewed in the middle of a long chunk (a thread with its
# own connection), so a launch on another host does not take a live run for
# dead: with a 0.9 s lease, a chunk held 4 s by a trigger keeps a fresh beat.
psql "$REPO" -q <<'SQL'
CREATE TABLE slow (id integer NOT NULL, v text);
CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN IF NEW.id = 50 THEN PERFORM pg_sleep(4); END IF; RETURN NEW; END $$;
CREATE TRIGGER slow BEFORE INSERT ON slow FOR EACH ROW EXECUTE FUNCTION slow_row();
SQL
load_job slow.yaml slowjob slow
csv_rows 1 100 > slow.csv
TARGET_URL="$REPO" NIGHTSHIFT_LEASE=0.9 "$NS" run slow.yaml file=slow.csv > slow.out 2>&1 & pid=$!
sleeping=0
for _ in $(seq 100); do
    [ "$(psql "$REPO" -Atc "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")" = 1 ] &&
        sleeping=1 && break
    sleep 0.1
done
[ $sleeping = 1 ] || fail "the slow chunk never started (no PgSleep seen): the check below would prove nothing"
sleep 1.5 # well past the lease since the chunk began
fresh=$(psql "$REPO" -Atc "SELECT now() - e.heartbeat < interval '1 second' FROM nightshift.ns_job_execution e
    JOIN nightshift.ns_job_instance i ON i.id = e.instance_id WHERE i.job_name = 'slowjob'")
wait $pid || { cat slow.out >&2; fail "the slow job failed"; }
assert_eq "$fresh" t "heartbeat renewed during a 4 s chunk (lease 0.9 s)"
assert_eq "$(psql "$REPO" -Atc 'SELECT count(*) FROM slow')" 100 "rows of the slow job"
echo "heartbeat during a long chunk: ok"
echo "repository on PostgreSQL: ok"

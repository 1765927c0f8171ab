#!/usr/bin/env bash
# The command line as a new user meets it (issue 9): every command explains
# itself (COMMAND --help, help COMMAND, -V), exit statuses outside a run are
# the documented ones, list/show times are labelled, counts have one style,
# list survives long names and odd parameter values, --status takes any
# case, the run line and show agree on the exit code, the skip-limit message
# names the record that crossed the limit, a dead run says so in list and
# show, show says which execution restarted which, and the live progress
# line shows skipped items.
source "$(dirname "$0")/lib.sh"

# --- help and version -----------------------------------------------------
for c in run restart stop abandon list show validate; do
    expect_exit 0 "$NS" "$c" --help
    grep -q "^usage: nightshift $c" "$T/out" || fail "$c --help: $(cat "$T/out")"
    expect_exit 0 "$NS" help "$c"
    grep -q "^usage: nightshift $c" "$T/out" || fail "help $c: $(cat "$T/out")"
done
expect_exit 0 "$NS" help
grep -q "validate" "$T/out" || fail "help lists no commands"
expect_exit 2 "$NS" help frobnicate
expect_err "unknown command 'frobnicate'"
expect_exit 2 "$NS" show
expect_err "usage: nightshift show EXECUTION_ID"
expect_exit 0 "$NS" -V
grep -q "^nightshift [0-9]" "$T/out" || fail "-V: $(cat "$T/out")"
expect_exit 0 "$NS" --version

# --- exit statuses outside a run -------------------------------------------
export TARGET_DB="$T/t.db" TARGET_URL="sqlite:$T/t.db"
sqlite3 "$TARGET_DB" "CREATE TABLE k (id INTEGER PRIMARY KEY, v INTEGER)"
load_job job.yaml cli k "skip: {limit: 2}"
python3 -c "
print('id,v')
for i in range(1, 11): print(f'{i},{\"x\" if i in (2, 4, 6, 8) else i}')" > bad.csv
expect_exit 1 "$NS" run job.yaml file=bad.csv
for c in show stop abandon restart; do
    expect_exit 2 "$NS" "$c" 999
    expect_err "999"
done
dead="postgresql://u@127.0.0.1:1/db"
for c in "list" "show 1" "stop 1" "run job.yaml file=bad.csv"; do
    # shellcheck disable=SC2086
    expect_exit 1 "$NS" $c --repository "$dead"
    expect_err "cannot connect"
done

# --- the skip-limit message names the record that crossed it --------------
# Limit 2: lines 3, 5 are within it; line 7 (the third reject) crosses it.
"$NS" show 1 --json > show1.json
python3 -c "
import json; d = json.load(open('show1.json'))
m = d['exit_message']
assert 'skip limit 2 exceeded by line 7, column v' in m, m" || fail "skip-limit message: $(cat show1.json)"

# --- one number style; the run line and show agree on the exit code -------
python3 -c "
print('id,v')
for i in range(1, 3001): print(f'{i},{\"x\" if i % 5 == 0 else i}')" > many.csv
load_job big.yaml cli-big k "skip: {limit: 100000}"
sqlite3 "$TARGET_DB" "DELETE FROM k"
expect_exit 0 "$NS" run big.yaml file=many.csv
expect_err "read 3,000  written 2,400  skipped 600 (read 0, process 0, write 600)  commits 31"
expect_err "COMPLETED: step load: 600 of 3,000 records rejected"
cat > cmp.yaml <<EOF
job: cli-cmp
connections:
  t: "sqlite:$TARGET_DB"
steps:
  - name: cmp
    compare:
      left: {connection: t, query: "SELECT id, v FROM k"}
      right: {connection: t, query: "SELECT id, v FROM k WHERE id > 10"}
      key: [id]
EOF
expect_exit 0 "$NS" run cmp.yaml
id=$(sql "$T/repo.db" "SELECT max(id) FROM ns_job_execution")
expect_err "execution $id: COMPLETED_WITH_DIFFERENCES: step cmp:"
assert_eq "$(show_field "$id" "['exit_code']")" COMPLETED_WITH_DIFFERENCES "show's exit code"

# --- list: long names, odd values, any-case status, labelled times --------
long=cli-a-job-with-a-name-long-enough-to-push-every-column-out-of-its-place
sed "s/^job: cli$/job: $long/" job.yaml > long.yaml
printf 'job: %s\nparams:\n  note: {type: string, default: x}\nconnections:\n  t: "sqlite:%s"\nsteps:\n  - {name: s, sql: {connection: t, script: "SELECT 1"}}\n' \
    "$long" "$TARGET_DB" > note.yaml
expect_exit 0 "$NS" run note.yaml 'note=a b, "c"'
zone=UTC
[ -e /usr/share/zoneinfo/Asia/Seoul ] && zone=Asia/Seoul
expect_exit 0 env TZ=$zone "$NS" list --status completed
python3 - "$T/out" "$long" "$zone" <<'PY' || exit 1
import re, sys
rows = open(sys.argv[1]).read().splitlines()
head, long, zone = rows[0], sys.argv[2], sys.argv[3]
want = {"Asia/Seoul": "KST", "UTC": "UTC"}[zone]
for col in ("JOB", "STATUS", "STARTED", "PARAMS"):
    at = head.index(col)
    for r in rows[1:]:
        if r[at - 2:at] != "  ":
            sys.exit(f"FAIL: list: column {col} not aligned in\n{head}\n{r}")
row = next(r for r in rows if long in r)
if 'note="a b, \\"c\\""' not in row:
    sys.exit(f"FAIL: list: the value with blanks, a comma and quotes is not quoted: {row}")
if not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d " + want, row):
    sys.exit(f"FAIL: list: the time is not labelled with its zone ({want}): {row}")
if any("FAILED" in r for r in rows[1:]):
    sys.exit("FAIL: list --status completed listed a FAILED execution")
PY
expect_exit 2 "$NS" list --status finished
expect_err "unknown status 'finished' (one of: STARTING, STARTED, STOPPING, STOPPED, FAILED, COMPLETED, ABANDONED, UNKNOWN)"
expect_exit 0 "$NS" show 1 --json
python3 -c "
import json, re, sys
d = json.load(open('$T/out'))
assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', d['started_at']), d['started_at']" ||
    fail "show --json: times are not ISO 8601 with their offset"

# --- a dead run says so; show says which execution restarted which -------
sqlite3 "$TARGET_DB" "DELETE FROM k"
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=1 "$NS" run big.yaml file=many.csv how=dead
dead_id=$(sql "$T/repo.db" "SELECT max(id) FROM ns_job_execution")
expect_exit 0 "$NS" list
grep -qE "^$dead_id +cli-big +STARTED \(process gone\)" "$T/out" || fail "list: a dead run: $(cat "$T/out")"
expect_exit 0 "$NS" show "$dead_id"
grep -q "status      STARTED (process gone" "$T/out" || fail "show: a dead run: $(cat "$T/out")"
assert_eq "$(show_field "$dead_id" "['liveness']")" "process gone" "show --json liveness"
expect_exit 0 "$NS" run big.yaml file=many.csv how=dead
expect_exit 0 "$NS" show "$dead_id"
grep -q "restarted   by execution $((dead_id + 1))" "$T/out" || fail "show: restarted by: $(cat "$T/out")"
assert_eq "$(show_field "$((dead_id + 1))" "['restart_of']")" "$dead_id" "restart_of"
assert_eq "$(show_field "$dead_id" "['restarted_by']")" "$((dead_id + 1))" "restarted_by"
# Another host's run whose heartbeat is older than the lease.
if unshare --uts true 2>/dev/null; then
    sqlite3 "$TARGET_DB" "DELETE FROM k"
    unshare --uts sh -c "hostname ns-other-host && NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=1 '$NS' run big.yaml file=many.csv how=far" \
        > /dev/null 2>&1 || true
    far=$(sql "$T/repo.db" "SELECT max(id) FROM ns_job_execution")
    sleep 1.2
    expect_exit 0 env NIGHTSHIFT_LEASE=1 "$NS" list
    grep -qE "^$far +cli-big +STARTED \(heartbeat stale\)" "$T/out" || fail "list: a stale run: $(cat "$T/out")"
fi

# --- the live progress line (on a terminal) shows skipped items -----------
if command -v script > /dev/null; then
    python3 -c "
print('id,v')
for i in range(1, 300001): print(f'{i},{\"x\" if i % 7 == 0 else i}')" > slow.csv
    sqlite3 "$TARGET_DB" "DELETE FROM k"
    env -u CI script -qefc "'$NS' run big.yaml file=slow.csv how=tty" /dev/null > tty.out 2>&1 ||
        fail "the run on a terminal failed: $(tail -3 tty.out)"
    tr '\r' '\n' < tty.out | sed 's/\x1b\[K//g' | grep -E '^load: [0-9,]+ items  [0-9,]+/s  skipped [0-9,]+' > /dev/null ||
        fail "the live progress line shows no skipped items: $(tr '\r' '\n' < tty.out | head -5)"
    # A restart's ETA (from what this run read, not from the file's start).
    sqlite3 "$TARGET_DB" "DELETE FROM k"
    expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=1000 "$NS" run big.yaml file=slow.csv how=eta
    env -u CI script -qefc "'$NS' run big.yaml file=slow.csv how=eta" /dev/null > tty2.out 2>&1 ||
        fail "the restart on a terminal failed: $(tail -3 tty2.out)"
    tr '\r' '\n' < tty2.out | grep 'resuming after chunk 1000' > /dev/null || fail "the tty run did not resume"
    tr '\r' '\n' < tty2.out | grep -E ' [0-9]+%  ETA [0-9]+:[0-9]{2}' > /dev/null ||
        fail "the restart's progress line shows no ETA: $(tr '\r' '\n' < tty2.out | tail -5)"
fi
echo "cli: help, exit statuses, formats, liveness, progress"

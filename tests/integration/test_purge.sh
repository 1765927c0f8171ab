#!/usr/bin/env bash
# nightshift purge (docs/operations.md, "Purge"): against a repository with
# completed, failed-then-completed, unfinished (failed) and running (dead,
# never recovered) executions of one job and completed ones of another:
# --dry-run changes nothing; --keep-last and --before delete exactly the
# finished instances' executions, never a running one nor an unfinished
# instance's; a purged completed instance still refuses to run again; the
# unfinished one still restarts; --with-files removes the rejects files the
# purged executions wrote. On SQLite, and on PostgreSQL with
# PURGE_REPO=pg (test_purge_pg.sh).
source "$(dirname "$0")/lib.sh"
if [ "${PURGE_REPO:-sqlite}" == pg ]; then
    NIGHTSHIFT_REPOSITORY=$(pg_db ns_purge)
    export NIGHTSHIFT_REPOSITORY
fi
export TARGET_URL="sqlite:$T/target.db"
sqlite3 "$T/target.db" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT);"
csv_rows 1 300 > in.csv
printf 'id,v\nx,1\n' > bad.csv
{ echo "id,v"; echo "1,a"; echo "x,b"; echo "3,c"; } > one-bad.csv
load_job j.yaml pj k "skip: {limit: 5}" 'rejects: "rejects/${execution.id}.csv"'
load_job other.yaml pk k
status() { show_field "$1" "['status']"; }
count() { "$NS" list --limit 1000 --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)))"; }

for d in 1 2 4 5; do expect_exit 0 "$NS" run j.yaml file=in.csv how="d$d"; done # 1 2 3 4
expect_exit 0 "$NS" run j.yaml file=one-bad.csv how=d3                         # 5: a rejects file
[ -f rejects/5.csv ] || fail "execution 5 wrote no rejects file"
expect_exit 1 "$NS" run j.yaml file=late6.csv how=d6                           # 6: FAILED, unfinished
expect_exit 1 "$NS" run j.yaml file=late7.csv how=d7                           # 7: FAILED
cp in.csv late7.csv
expect_exit 0 "$NS" run j.yaml file=late7.csv how=d7                           # 8: its restart
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=1 "$NS" run j.yaml file=in.csv how=d9 > /dev/null 2>&1 || true # 9: STARTED, dead
expect_exit 0 "$NS" run other.yaml file=in.csv how=a                           # 10
expect_exit 0 "$NS" run other.yaml file=in.csv how=b                           # 11
assert_eq "$(status 6)" FAILED "execution 6"
assert_eq "$(status 9)" STARTED "execution 9"
assert_eq "$(count)" 11 "executions before the purge"

expect_exit 2 "$NS" purge
expect_err "purge needs --before DATE or --keep-last N"
expect_exit 2 "$NS" purge --before 2026-13-01
expect_err "not a date"
expect_exit 2 "$NS" purge --keep-last 0

# --dry-run: the count, nothing deleted
expect_exit 0 "$NS" purge --keep-last 3 --job pj --dry-run --with-files
grep -q "would delete 5 executions, 5 steps, .* parameters, 5 contexts, 1 rejects files (--dry-run: nothing changed)" "$T/out" ||
    { cat "$T/out" "$T/err"; fail "dry run: the counts"; }
assert_eq "$(count)" 11 "executions after --dry-run"
[ -f rejects/5.csv ] || fail "--dry-run removed a file"

# A context that names a file no purged execution wrote (a target's
# checkpoint, reconciled into the repository, is other users' to write):
# --with-files keeps it, since its tag does not say it is that execution's.
echo keep > victim.csv
if [[ $NIGHTSHIFT_REPOSITORY == postgresql:* ]]; then
    db_sql "$NIGHTSHIFT_REPOSITORY" "UPDATE nightshift.ns_execution_context SET context =
        jsonb_set(context::jsonb, '{rejects}', jsonb_build_object('path', '$T/victim.csv', 'offset', 0))::text
        WHERE step_execution_id IN (SELECT id FROM nightshift.ns_step_execution WHERE execution_id = 4)"
else
    db_sql "$NIGHTSHIFT_REPOSITORY" "UPDATE ns_execution_context SET context =
        json_set(context, '\$.rejects', json_object('path', '$T/victim.csv', 'offset', 0))
        WHERE step_execution_id IN (SELECT id FROM ns_step_execution WHERE execution_id = 4)"
fi
# --keep-last 3 of pj: 9, 8, 7 kept; of 6..1, 6 is an unfinished instance's
expect_exit 0 "$NS" purge --keep-last 3 --job pj --with-files
grep -q "^deleted 5 executions, 5 steps, .* parameters, 5 contexts, 1 rejects files$" "$T/out" ||
    { cat "$T/out" "$T/err"; fail "purge --keep-last: the counts"; }
assert_eq "$(count)" 6 "executions after --keep-last 3"
for id in 1 2 3 4 5; do
    "$NS" show "$id" > /dev/null 2>&1 && fail "execution $id was not purged"
done
for id in 6 7 8 9 10 11; do "$NS" show "$id" > /dev/null || fail "execution $id was purged"; done
[ -f rejects/5.csv ] && fail "--with-files kept execution 5's rejects file"
assert_eq "$(cat victim.csv)" keep "a file the purged execution did not write"
# a purged completed instance still refuses to run again
expect_exit 4 "$NS" run j.yaml file=in.csv how=d1
expect_err "already completed"

# --before: every finished instance's execution created before tomorrow,
# but the newest of the repository (11: an id is never given twice)
tomorrow=$(date -u -d tomorrow +%Y-%m-%d)
expect_exit 0 "$NS" purge --before "$tomorrow"
grep -q "^deleted 3 executions" "$T/out" || { cat "$T/out"; fail "purge --before: the count"; }
for id in 7 8 10; do
    "$NS" show "$id" > /dev/null 2>&1 && fail "execution $id was not purged"
done
assert_eq "$(status 11)" COMPLETED "the newest execution after the purge"
assert_eq "$(status 6)" FAILED "the unfinished instance's execution after the purge"
assert_eq "$(status 9)" STARTED "the running execution after the purge"
expect_exit 4 "$NS" run other.yaml file=in.csv how=a
expect_err "already completed (its executions were purged)"
expect_exit 0 "$NS" purge --before 2000-01-01
grep -q "^deleted 0 executions" "$T/out" || { cat "$T/out"; fail "purge of nothing"; }
# a new execution's id is past every one given before
expect_exit 0 "$NS" run other.yaml file=in.csv how=c
expect_err "execution 12: COMPLETED"
# the unfinished instance restarts from its own execution
cp in.csv late6.csv
expect_exit 0 "$NS" run j.yaml file=late6.csv how=d6
expect_err "restarts execution 6"
echo "purge: ok (${PURGE_REPO:-sqlite})"

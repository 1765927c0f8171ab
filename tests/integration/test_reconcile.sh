#!/usr/bin/env bash
# The window between a chunk's commit in the target and the repository's
# update (docs/internals.md, "Exactly-once restart"): a process that dies there leaves the repository
# behind; the next run trusts the target's checkpoint, reconciles the
# repository, and neither loses nor repeats a row. For a replace step, whose
# one transaction is the whole step, the rerun must not replace the table
# again. Also: a file changed before the saved position is refused.
source "$(dirname "$0")/lib.sh"
export TARGET_DB="$T/target.db" TARGET_URL="sqlite:$T/target.db"
sqlite3 "$TARGET_DB" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT);"
load_job job.yaml reconcile k
WRITER_MODE=replace load_job replace.yaml reconcile-replace k
csv_rows 1 1000 > in.csv

# insert: die after the 3rd chunk's commit; the repository saw only 2.
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=3 "$NS" run job.yaml file=in.csv
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM k')" 300 "rows in the target"
assert_eq "$(show_field 1 "['steps'][0]['commit_count']")" 2 "commits the repository saw"
expect_exit 0 "$NS" run job.yaml file=in.csv
expect_err "resuming after chunk 3 at line 302"
assert_eq "$(show_field 1 "['steps'][0]['commit_count']")" 3 "commits after reconciling"
assert_eq "$(show_field 1 "['steps'][0]['read_count']")" 300 "reads after reconciling"
assert_eq "$(show_field 2 "['steps'][0]['read_count']")" 700 "reads of the restart"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*), count(DISTINCT id) FROM k')" "1000|1000" "rows"

# replace: die right after the step's single commit; the rerun must record
# the step as done, not delete the rows it committed.
csv_rows 5001 5250 r > new.csv
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=1 "$NS" run replace.yaml file=new.csv
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*), min(id) FROM k')" "250|5001" "rows after the replace"
expect_exit 0 "$NS" run replace.yaml file=new.csv
expect_err "already committed in the target"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*), min(id) FROM k')" "250|5001" "rows after the rerun"

# A file edited before the saved position is refused, not misread.
sqlite3 "$TARGET_DB" "DELETE FROM k"
csv_rows 1 1000 w > edit.csv
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=2 "$NS" run job.yaml file=edit.csv
sed -i '2s/w1/longer-value-1/' edit.csv
expect_exit 1 "$NS" run job.yaml file=edit.csv
expect_err "cannot resume at line 202"
expect_err "the file changed before that point"
echo "reconcile: ok"

# A checkpoint this repository did not write (the repository was recreated)
# is refused, naming the choices; --ignore-checkpoint starts afresh, and the
# run records its own steps correctly.
sqlite3 "$TARGET_DB" "DELETE FROM k"
rm -f "$T"/repo.db*
export NIGHTSHIFT_REPOSITORY="sqlite:$T/fresh-repo.db"
expect_exit 1 "$NS" run job.yaml file=in.csv
expect_err "the target holds a checkpoint of this job instance written by execution"
expect_err "of another repository"
expect_err "run again with --adopt-checkpoint to resume from it, or with --ignore-checkpoint"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM k')" 0 "rows written by the refused run"
expect_exit 0 "$NS" run job.yaml file=in.csv --ignore-checkpoint
expect_err "is disregarded (--ignore-checkpoint)"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*), count(DISTINCT id) FROM k')" "1000|1000" "rows after a fresh start"
assert_eq "$(show_field 2 "['steps'][0]['read_count']")" 1000 "reads of the fresh start"
echo "reconcile (stale checkpoint): ok"

# An execution killed with a chunk's rejects on disk but before committing any
# chunk: its rejects file is covered by no checkpoint. The restart removes it,
# so over all the files each bad record appears once.
sqlite3 "$TARGET_DB" "DELETE FROM k"
load_job rejects.yaml reconcile-rejects k "skip: {limit: 100}" 'rejects: "rej/${execution.id}.csv"'
python3 -c "
print('id,v')
for i in range(1, 501): print(f'{i},v{i}' if i % 50 else f'{i},v{i},extra')" > bad.csv
expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=1 "$NS" run rejects.yaml file=bad.csv
[ -s rej/3.csv ] || fail "the killed execution wrote no rejects (the test lost its point)"
expect_exit 0 "$NS" run rejects.yaml file=bad.csv
[ -e rej/3.csv ] && fail "the killed execution's uncommitted rejects were left behind"
assert_eq "$(cat rej/*.csv | grep -vc '^line,')" 10 "rejects over all files"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*), count(DISTINCT id) FROM k')" "490|490" "rows"
echo "reconcile (uncommitted rejects): ok"

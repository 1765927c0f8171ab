#!/usr/bin/env bash
# What nightshift trusts (issue 8): the target's checkpoint row, which any
# user of the target can edit, never leads it to truncate a file its job
# does not write; a parameter cannot lead a path out of its folder; a link
# planted at an output path is not followed; a restart on a changed input
# file is refused; a checkpoint this repository did not write is refused
# (the lost or recreated repository), with --adopt-checkpoint and
# --ignore-checkpoint as the ways on; --next never gives a used run.id.
source "$(dirname "$0")/lib.sh"
export TARGET_DB="$T/t.db" TARGET_URL="sqlite:$T/t.db"
sqlite3 "$TARGET_DB" "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT CHECK (v <> 'bad'))"
python3 -c "
print('id,v')
for i in range(1, 3001): print(f'{i},bad' if i % 100 == 0 else f'{i},v{i}')" > in.csv
ckpt() { sql "$TARGET_DB" "SELECT json_extract(context, '$1') FROM nightshift_checkpoint WHERE job_name = '$2'"; }

# --- the rejects path in the target's checkpoint -------------------------
load_job rej.yaml trust-rej k "skip: {limit: 1000}" 'rejects: "rej/${execution.id}.csv"'
echo "precious" > victim.txt
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=5 "$NS" run rej.yaml file=in.csv
[ -s rej/1.csv ] || fail "no rejects were written before the crash"
lines_before=$(wc -l < rej/1.csv)
# Another user of the target points the checkpoint's rejects path elsewhere.
sql "$TARGET_DB" "UPDATE nightshift_checkpoint SET context = json_set(context, '$.rejects.path',
    '$T/victim.txt', '$.rejects.offset', 0) WHERE job_name = 'trust-rej'"
expect_exit 0 "$NS" run rej.yaml file=in.csv
expect_err "names the rejects file $T/victim.txt, which is not the file this job writes"
assert_eq "$(cat victim.txt)" "precious" "the file the edited checkpoint named"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM k")" 2970 "rows after the restart"
# The legitimate path is still cut back, also when the restart is run from
# another folder: the crash leaves chunk 6's rejects past the checkpoint.
sql "$TARGET_DB" "DELETE FROM k"
load_job rej2.yaml trust-rej2 k "skip: {limit: 1000}" 'rejects: "rej2/${execution.id}.csv"'
expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=6 "$NS" run rej2.yaml file=in.csv
id=$(sql "$T/repo.db" "SELECT max(id) FROM ns_job_execution")
mkdir -p elsewhere
(cd elsewhere && expect_exit 0 "$NS" restart "$id")
assert_eq "$(cat rej2/*.csv | grep -v '^line,' | cut -d, -f1 | sort -n | uniq -d | wc -l)" 0 "rejects written twice"
assert_eq "$(cat rej2/*.csv | grep -vc '^line,')" 30 "rejects over all files"
echo "trust: an edited checkpoint truncates nothing"

# --- parameters that would leave the rejects folder, and planted links ----
load_job tag.yaml trust-tag k "skip: {limit: 1000}" 'rejects: "rej/${params.how}.csv"'
sql "$TARGET_DB" "DELETE FROM k"
for bad in ../../x ../x a/b .. .; do
    expect_exit 2 "$NS" run tag.yaml file=in.csv "how=$bad"
    expect_err "would add a folder to the path"
done
[ -e "$T/../x.csv" ] || [ -e x.csv ] && fail "a rejects file was written outside rej/"
ln -s "$T/victim.txt" rej/linked.csv
expect_exit 1 "$NS" run tag.yaml file=in.csv how=linked
expect_err "it is a symbolic link; nightshift does not write through one"
assert_eq "$(cat victim.txt)" "precious" "the file behind the planted link"
rm rej/linked.csv
expect_exit 0 "$NS" run tag.yaml file=in.csv how=linked --ignore-checkpoint
[ -L rej/linked.csv ] && fail "the rejects file is still a link"
assert_eq "$(grep -c ',23514,\|CHECK' rej/linked.csv)" 30 "rejects written once the link is gone"
# A compare's output: its temporary file may not be a planted link either.
cat > cmp.yaml <<EOF
job: trust-cmp
connections:
  t: "sqlite:$TARGET_DB"
steps:
  - name: cmp
    compare:
      left: {connection: t, query: "SELECT id, v FROM k"}
      right: {connection: t, query: "SELECT id, v FROM k WHERE id > 5"}
      key: [id]
      output: "diff.csv"
EOF
ln -s "$T/victim.txt" diff.csv.tmp
expect_exit 1 "$NS" run cmp.yaml
expect_err "a symbolic link is in the way of its temporary file"
assert_eq "$(cat victim.txt)" "precious" "the file behind the compare's planted link"
rm diff.csv.tmp
echo "trust: paths stay in their folder, links are not followed"

# --- a changed input file -------------------------------------------------
load_job chg.yaml trust-chg k "skip: {limit: 10000}" 'rejects: "chg/${execution.id}.csv"'
sql "$TARGET_DB" "DELETE FROM k"
python3 -c "
print('id,v')
for i in range(1, 7001): print(f'{i},v{i}')" > gen.csv
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=50 "$NS" run chg.yaml file=gen.csv
# Regenerated between the failure and the rerun: same size, same line
# lengths, other values (the resume point still falls on a line start).
python3 -c "
print('id,v')
for i in range(1, 7001): print(f'{i},w{i}')" > gen.csv
expect_exit 1 "$NS" run chg.yaml file=gen.csv
expect_err "the file changed since the checkpoint: its first"
expect_err "run again with --restart-from-beginning"
expect_exit 0 "$NS" run chg.yaml file=gen.csv --restart-from-beginning
assert_eq "$(sql "$TARGET_DB" "SELECT count(*), sum(v LIKE 'w%') FROM k")" "7000|2000" \
    "rows: the first 5000 committed before, the rest of the new file (its first 5000 rejected as duplicates)"
# An unchanged file (touched, or appended to after the resume point) resumes.
sql "$TARGET_DB" "DELETE FROM k"
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=20 "$NS" run chg.yaml file=gen.csv how=2
touch gen.csv
echo "7001,w7001" >> gen.csv
expect_exit 0 "$NS" run chg.yaml file=gen.csv how=2
expect_err "resuming after chunk 20 at line 2002"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM k")" 7001 "rows after resuming on a grown file"
echo "trust: a changed input is refused"

# --- a lost or edited repository ------------------------------------------
cat > flow.yaml <<EOF
job: trust-flow
params:
  file: {type: string, required: true}
  how: {type: string, default: ''}
connections:
  t: "sqlite:$TARGET_DB"
steps:
  - name: mark
    sql: {connection: t, script: "INSERT INTO marks VALUES (1)"}
  - name: load
    chunk: 100
    reader: {csv: {path: "\${params.file}"}}
    writer: {table: {connection: t, name: k}}
    skip: {limit: 1000}
EOF
sql "$TARGET_DB" "DELETE FROM k; CREATE TABLE marks (n INTEGER)"
# (The fault point counts each step's own commits: the load's 10th chunk.)
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=10 "$NS" run flow.yaml file=in.csv
# The step rows deleted from the repository: the checkpoint was still
# written by an execution it records for this instance, so it is followed,
# and nothing runs twice.
sql "$T/repo.db" "DELETE FROM ns_execution_context; DELETE FROM ns_step_execution"
expect_exit 0 "$NS" run flow.yaml file=in.csv
expect_err "step load: resuming after chunk 10 at line 1002"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM marks")" 1 "the sql step ran once"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*), count(DISTINCT id) FROM k")" "2970|2970" "rows"
# The execution itself deleted (an edited repository): refused.
sql "$TARGET_DB" "DELETE FROM k; DELETE FROM marks"
expect_exit 99 env NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=10 "$NS" run flow.yaml file=in.csv how=2
last=$(sql "$T/repo.db" "SELECT max(id) FROM ns_job_execution")
sql "$T/repo.db" "DELETE FROM ns_job_param WHERE execution_id = $last;
    DELETE FROM ns_execution_context WHERE step_execution_id IN
        (SELECT id FROM ns_step_execution WHERE execution_id = $last);
    DELETE FROM ns_step_execution WHERE execution_id = $last;
    DELETE FROM ns_job_execution WHERE id = $last"
# (Another job's run takes the freed id: the checkpoint's writer is now an
# execution of something else.)
printf 'job: trust-other\nconnections: {t: "sqlite:%s"}\nsteps:\n  - {name: s, sql: {connection: t, script: "SELECT 1"}}\n' \
    "$TARGET_DB" > other.yaml
expect_exit 0 "$NS" run other.yaml
expect_exit 1 "$NS" run flow.yaml file=in.csv how=2
expect_err "written by execution $last, which this repository does not record for this job instance"
expect_err "--adopt-checkpoint"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM marks")" 1 "the sql step ran once"
# The repository file removed altogether: refused again, nothing written.
rm -f "$T"/repo.db*
expect_exit 1 "$NS" run flow.yaml file=in.csv how=2
expect_err "of another repository"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM marks")" 1 "the sql step ran once"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM k")" 990 "rows: the 10 chunks committed before"
expect_exit 2 "$NS" restart 1 --adopt-checkpoint --ignore-checkpoint
expect_err "cannot be used together"
# restart (of the refused execution 1 of the new repository) takes it too.
expect_exit 0 "$NS" restart 1 --adopt-checkpoint
expect_err "adopting a checkpoint of this job instance written by execution"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM marks")" 1 "the sql step ran once"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*), count(DISTINCT id) FROM k")" "2970|2970" "rows after adopting"
echo "trust: a checkpoint of unknown origin is refused, then adopted on request"

# --- silent loss: a stale checkpoint claimed by a run killed early --------
# Load with repository A; recreate the table; run with repository B, killed
# before its first commit; run again with B: it must not trust the stale
# checkpoint its killed predecessor claimed.
load_job loss.yaml trust-loss k2 "skip: {limit: 1000}"
sql "$TARGET_DB" "CREATE TABLE k2 (id INTEGER PRIMARY KEY, v TEXT)"
export NIGHTSHIFT_REPOSITORY="sqlite:$T/repo-a.db"
expect_exit 0 "$NS" run loss.yaml file=in.csv
sql "$TARGET_DB" "DROP TABLE k2; CREATE TABLE k2 (id INTEGER PRIMARY KEY, v TEXT)"
export NIGHTSHIFT_REPOSITORY="sqlite:$T/repo-b.db"
expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=1 "$NS" run loss.yaml file=in.csv --ignore-checkpoint
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM k2")" 0 "rows of the killed run"
expect_exit 1 "$NS" run loss.yaml file=in.csv
expect_err "of another repository"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM k2")" 0 "rows of the refused run"
expect_exit 0 "$NS" run loss.yaml file=in.csv --ignore-checkpoint
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM k2")" 3000 "rows after starting over"
echo "trust: a stale checkpoint is never trusted"

# --- --next after a run.id given by hand ----------------------------------
export NIGHTSHIFT_REPOSITORY="sqlite:$T/repo-next.db"
cat > next.yaml <<EOF
job: trust-next
connections:
  t: "sqlite:$TARGET_DB"
steps:
  - name: s
    sql: {connection: t, script: "SELECT 1"}
EOF
expect_exit 0 "$NS" run next.yaml run.id=5
ids=""
for i in 1 2 3 4 5 6; do
    expect_exit 0 "$NS" run next.yaml --next
    ids="$ids $(show_field $((i + 1)) "['params']['run.id']")"
done
assert_eq "$ids" " 6 7 8 9 10 11" "run.id given by --next after run.id=5"
expect_exit 0 "$NS" run next.yaml run.id=40
expect_exit 0 "$NS" run next.yaml --next
assert_eq "$(show_field 9 "['params']['run.id']")" 41 "run.id after run.id=40"
echo "trust: --next gives unused ids"

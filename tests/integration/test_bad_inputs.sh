#!/usr/bin/env bash
# Bad inputs get a clear error naming where, the documented exit status, and
# lose nothing already committed: invalid job files and parameters, missing
# files and tables, unmapped columns, a full disk, a corrupt repository,
# secrets kept out of messages. Also the writer modes and header-less CSV.
source "$(dirname "$0")/lib.sh"
export TARGET_DB="$T/target.db"
sqlite3 "$TARGET_DB" "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT NOT NULL, n INTEGER);"
DEFAULT_REJECTS='rejects/${execution.id}.csv'
write_job() { # write_job FILE [EXTRA STEP LINES] - reads the writer line from $WRITER
    cat > "$1" <<EOY
job: bad-inputs
params:
  file: {type: string, required: true}
  day: {type: date, default: today}
connections:
  target: "sqlite:\${env.TARGET_DB}"
steps:
  - name: load
    chunk: 2
    reader: {csv: {path: "\${params.file}"${READER_EXTRA:-}}}
    writer: {table: {connection: target, name: ${TABLE:-u}${WRITER_EXTRA:-}}}
    skip: {limit: 10}
    rejects: "${REJECTS:-$DEFAULT_REJECTS}"
EOY
}
write_job job.yaml
printf 'id,email,n\n1,a@x,1\n2,b@x,2\n3,c@x,3\n4,d@x,4\n5,e@x,oops\n6,f@x,6\n' > in.csv

# Job files and parameters: exit 2, nothing recorded.
expect_exit 0 "$NS" validate job.yaml
sed 's/chunk: 2/chunk: -2/' job.yaml > broken.yaml
expect_exit 2 "$NS" validate broken.yaml
expect_err "broken.yaml:9: steps[0].chunk: must be a positive integer"
expect_exit 2 "$NS" run broken.yaml file=in.csv
expect_exit 2 "$NS" run missing.yaml file=in.csv
expect_err "missing.yaml: cannot open"
expect_exit 2 "$NS" run job.yaml
expect_err "parameter 'file' is required"
expect_exit 2 "$NS" run job.yaml file=in.csv colour=blue
expect_err "unknown parameter 'colour' (job bad-inputs declares: file, day)"
expect_exit 2 "$NS" run job.yaml file=in.csv day=2026-02-30
expect_err "parameter 'day' (date): '2026-02-30' is not a date"
expect_exit 2 env -u TARGET_DB "$NS" run job.yaml file=in.csv
expect_err "uses \${env.TARGET_DB}, which is not set"
expect_exit 0 "$NS" list
grep -q "no executions" "$T/out" || fail "a refused job file left an execution behind"

# Command-line usage.
expect_exit 2 "$NS" show 999
expect_err "no execution 999"
expect_exit 2 "$NS" show abc
expect_exit 2 "$NS" list --status SLEEPING
expect_err "unknown status 'SLEEPING'"
expect_exit 2 "$NS" frobnicate
expect_exit 2 "$NS" run job.yaml --bogus

# Missing input file, empty file, missing table, unmapped columns: FAILED, said where.
expect_exit 1 "$NS" run job.yaml file=nope.csv
expect_err "nope.csv: the file does not exist"
: > empty.csv
expect_exit 1 "$NS" run job.yaml file=empty.csv
expect_err "empty.csv: the file is empty (no header line)"
printf 'id,email,n\n' > header-only.csv
expect_exit 0 "$NS" run job.yaml file=header-only.csv
expect_err "read 0  written 0"
TABLE=nope write_job nope.yaml
expect_exit 1 "$NS" run nope.yaml file=in.csv
expect_err "table 'nope' does not exist"
printf 'id,emial,n\n1,a,1\n' > typo.csv
expect_exit 1 "$NS" run job.yaml file=typo.csv
expect_err "input column 'emial' has no column in table u (its columns: id, email, n)"
printf 'id,n\n1,1\n' > short.csv
expect_exit 1 "$NS" run job.yaml file=short.csv
expect_err "column u.email is NOT NULL without a default, but the input has no column 'email'"
expect_exit 1 env TARGET_DB="$T/no/such/dir.db" "$NS" run job.yaml file=in.csv day=2026-01-01
expect_err "connection 'target' (sqlite:\${env.TARGET_DB}): the database file does not exist"

# A secret from the environment never appears in messages.
mkdir -p sec && cat > secret.yaml <<'EOY'
job: secret
connections:
  target: "sqlite:${env.SECRET_PATH}"
steps:
  - name: load
    reader: {csv: {path: in.csv}}
    writer: {table: {connection: target, name: u}}
EOY
expect_exit 1 env SECRET_PATH="$T/hunter2/x.db" "$NS" run secret.yaml
grep -q hunter2 "$T/err" && fail "the secret path leaked into the error: $(cat "$T/err")"
expect_err "connection 'target' (sqlite:\${env.SECRET_PATH}): the database file does not exist"
"$NS" show "$("$NS" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')" --json | grep hunter2 > /dev/null && fail "the secret leaked into the repository"

# Paths built from the environment: the files land where the variable says,
# but its value appears in no message and nowhere in the repository, also
# across a crash and restart (the rejects file is found again to be cut back).
mkdir -p "$T/hunter3/in"
cp in.csv "$T/hunter3/in/data.csv"
cat > envpath.yaml <<'EOY'
job: envpath
connections:
  target: "sqlite:${env.TARGET_DB}"
steps:
  - name: load
    chunk: 2
    reader: {csv: {path: "${env.SECRET_DIR}/in/data.csv"}}
    writer: {table: {connection: target, name: u}}
    skip: {limit: 10}
    rejects: "${env.SECRET_DIR}/rejects.csv"
EOY
sqlite3 "$TARGET_DB" "DELETE FROM u"
expect_exit 99 env SECRET_DIR="$T/hunter3" NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=2 "$NS" run envpath.yaml
expect_exit 0 env SECRET_DIR="$T/hunter3" "$NS" run envpath.yaml
grep -q hunter3 "$T/err" && fail "an environment value leaked into the output: $(cat "$T/err")"
expect_err 'rejected records are in ${env.SECRET_DIR}/rejects.csv'
for id in $("$NS" list --json | python3 -c 'import json,sys; print(" ".join(str(e["id"]) for e in json.load(sys.stdin)))'); do
    "$NS" show "$id" --json | grep hunter3 > /dev/null && fail "an environment value was stored in the repository"
done
sqlite3 "$TARGET_DB" "SELECT context FROM nightshift_checkpoint" | grep hunter3 > /dev/null &&
    fail "an environment value was stored in the checkpoint"
assert_eq "$(tail -n +2 "$T/hunter3/rejects.csv" | cut -d, -f1-3)" "6,n,22P02" "rejects across the restart"
expect_exit 1 env SECRET_DIR="$T/hunter3/missing" "$NS" run envpath.yaml --next
grep -q hunter3 "$T/err" && fail "an environment value leaked into an error: $(cat "$T/err")"
expect_err '${env.SECRET_DIR}/in/data.csv: the file does not exist'
sqlite3 "$TARGET_DB" "DELETE FROM u"

# A full disk for the rejects file: the step fails, the chunks committed
# before stay, and a restart (with a writable rejects path) completes.
REJECTS=/dev/full write_job full.yaml
expect_exit 1 "$NS" run full.yaml file=in.csv day=2026-01-02
expect_err "rejects file /dev/full: No space left on device"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM u')" 4 "rows committed before the disk filled"
sed -i 's|rejects: "/dev/full"|rejects: "rejects/full.csv"|' full.yaml
expect_exit 0 "$NS" run full.yaml file=in.csv day=2026-01-02
assert_eq "$(sql "$TARGET_DB" 'SELECT group_concat(id) FROM u')" "1,2,3,4,6" "rows after the restart"
assert_eq "$(tail -n +2 rejects/full.csv | cut -d, -f1-3)" "6,n,22P02" "the reject"
# A new instance with the same fixed rejects path does not overwrite the
# file another execution wrote (issue 9): it refuses, naming the writer,
# before reading anything; moved away, the run writes a fresh one.
sqlite3 "$TARGET_DB" "DELETE FROM u"
cp rejects/full.csv before.csv
expect_exit 1 "$NS" run full.yaml file=in.csv day=2026-01-03
expect_err "rejects file rejects/full.csv already holds what execution"
expect_err "of this repository wrote; nightshift never overwrites another execution's file"
cmp -s before.csv rejects/full.csv || fail "another execution's rejects file was changed"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM u')" 0 "rows of the refused run"
mv rejects/full.csv rejects/full-old.csv
expect_exit 0 "$NS" run full.yaml file=in.csv day=2026-01-03
assert_eq "$(cat rejects/full.csv | cut -d, -f1-3 | tr '\n' ' ')" "line,column,code 6,n,22P02 " \
    "rejects file of a fresh run"

# Modes: upsert updates by key; replace swaps the whole table; header-less input.
WRITER_EXTRA=", mode: upsert, key: [id]" write_job upsert.yaml
printf 'id,email,n\n1,new@x,10\n7,g@x,7\n' > up.csv
expect_exit 0 "$NS" run upsert.yaml file=up.csv
assert_eq "$(sql "$TARGET_DB" "SELECT email, n FROM u WHERE id = 1")" "new@x|10" "upserted row"
assert_eq "$(sql "$TARGET_DB" 'SELECT count(*) FROM u')" 6 "rows after upsert"
WRITER_EXTRA=", mode: replace" write_job replace.yaml
printf 'id,email,n\n100,r@x,1\n101,s@x,2\n102,t@x,3\n' > repl.csv
expect_exit 0 "$NS" run replace.yaml file=repl.csv
assert_eq "$(sql "$TARGET_DB" 'SELECT group_concat(id) FROM u')" "100,101,102" "rows after replace"
READER_EXTRA=", header: false, columns: [id, email, n], delimiter: ';'" write_job nohead.yaml
printf '200;x@y;1\n201;"a;b";2\n' > nohead.csv
expect_exit 0 "$NS" run nohead.yaml file=nohead.csv
assert_eq "$(sql "$TARGET_DB" "SELECT email FROM u WHERE id = 201")" "a;b" "header-less, quoted delimiter"

# A corrupt repository is named, not crashed on.
echo "this is not a database, just text that is long enough to look like a page header" > bad.db
expect_exit 1 "$NS" list --repository sqlite:bad.db
expect_err "repository bad.db"
expect_err "file is not a database"
# More unreadable records in a row than a chunk holds (chunk 2, 9 bad
# records): each chunk counts every record it reads, so none overflows.
printf 'id,email,n\n' > manybad.csv
for i in $(seq 100 108); do printf '%s,only-two\n' "$i" >> manybad.csv; done
printf '109,z@x,9\n' >> manybad.csv
REJECTS=manybad.rej.csv write_job manybad.yaml
expect_exit 0 "$NS" run manybad.yaml file=manybad.csv
assert_eq "$(($(wc -l < manybad.rej.csv) - 1))" 9 "rejects of 9 bad records in a row"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM u WHERE id = 109")" 1 "the good record after them"

# A COMMIT refused when the target is the repository's file (a deferred
# foreign key on SQLite, checked only then): the step is recorded FAILED with
# the reason, not left STARTED by the undone record of the chunk.
sqlite3 both.db "CREATE TABLE dp (id INTEGER PRIMARY KEY); INSERT INTO dp VALUES (1);
  CREATE TABLE dc (id INTEGER PRIMARY KEY, p INTEGER REFERENCES dp DEFERRABLE INITIALLY DEFERRED);"
printf 'id,p\n1,1\n2,9\n' > deferred.csv
load_job deferred.yaml deferred dc
NIGHTSHIFT_REPOSITORY=sqlite:both.db TARGET_URL=sqlite:both.db expect_exit 1 "$NS" run deferred.yaml file=deferred.csv
expect_err "a deferred constraint failed at commit"
assert_eq "$(sql both.db "SELECT status FROM ns_step_execution")" FAILED "step after a refused COMMIT"
assert_eq "$(sql both.db "SELECT count(*) FROM dc")" 0 "rows of the refused chunk"
echo "bad inputs: ok"

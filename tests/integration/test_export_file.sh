#!/usr/bin/env bash
# A database -> file export (writer: file, docs/jobs.md): CSV and JSON Lines
# checked against Python's parsers, values the formats cannot carry
# rejected by row and column, another run's file never overwritten, and
# exactly-once under kill -9: an export killed at random moments and at
# every fault point, relaunched each time, ends byte-identical to one that
# ran without interruption, with no partial file left behind.
# With EXPORT_PG=1 (test_export_file_pg.sh) the source and the kill loop's
# repository are PostgreSQL databases.
source "$(dirname "$0")/lib.sh"
SEED=${NS_TEST_SEED:-$(($(date +%s) % 100000))}
RANDOM=$SEED
echo "kill moments: seed $SEED (the same again: NS_TEST_SEED=$SEED)"
ROWS=${EXPORT_ROWS:-300000}
SRC_URL=sqlite:$T/app.db KILL_REPOSITORY=sqlite:$T/kill-repo.db
if [ "${EXPORT_PG:-}" == 1 ]; then
    SRC_URL=$(pg_db ns_export_src) KILL_REPOSITORY=$(pg_db ns_export_repo)
fi
export SRC_URL

# The source: every kind of value a CSV or JSON writer gets wrong (NULL and
# the empty string, separators, quotes, line breaks, control characters,
# backslashes, multi-byte UTF-8), and every 1000th row holds a value no
# text file of UTF-8 can carry: invalid UTF-8 (odd rows) or a NUL byte.
python3 - "$ROWS" > rows.tsv <<'PY'
import sys
n = int(sys.argv[1])
kinds = [None, "", "plain", "a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "tab\there",
         "back\\slash", "ctl\x01\x1f", "caf\u00e9 \u65e5\u672c \U0001f600", " spaced "]
for i in range(1, n + 1):
    v = kinds[i % len(kinds)]
    print(f"{i}\t{'N' if v is None else v.encode().hex()}\t{i * 7 % 1000}")
PY
if [[ $SRC_URL == sqlite:* ]]; then
    python3 - "${SRC_URL#sqlite:}" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT, points INTEGER)")
rows = []
for line in open("rows.tsv"):
    i, v, p = line.rstrip("\n").split("\t")
    rows.append((int(i), None if v == "N" else bytes.fromhex(v).decode(), int(p)))
db.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
# Hostile rows, as text SQLite holds without checking it.
db.execute("UPDATE t SET note = CAST(x'61ff62' AS TEXT) WHERE id % 1000 = 0 AND id % 2000 <> 0")
db.execute("UPDATE t SET note = CAST(x'610062' AS TEXT) WHERE id % 2000 = 0")
db.commit()
PY
    BAD_ROWS=$((ROWS / 1000))
else
    # PostgreSQL cannot hold either: the source is clean.
    psql "$SRC_URL" -qAtX -c "CREATE TABLE t (id integer PRIMARY KEY, note text, points integer)"
    python3 - <<'PY' | psql "$SRC_URL" -qAtX -c "COPY t FROM STDIN"
import sys
esc = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
for line in open("rows.tsv"):
    i, v, p = line.rstrip("\n").split("\t")
    v = "\\N" if v == "N" else "".join(esc.get(c, c) for c in bytes.fromhex(v).decode())
    sys.stdout.write(f"{i}\t{v}\t{p}\n")
PY
    BAD_ROWS=0
fi

export_job() { # export_job FILE PATH [STEP KEY ...]: one step, query -> file
    local file=$1 path=$2
    shift 2
    {
        echo "job: export-${file%.yaml}"
        echo "params:"
        echo "  how: {type: string, default: ''}"
        echo "connections:"
        echo "  app: \"\${env.SRC_URL}\""
        echo "steps:"
        echo "  - name: dump"
        echo "    chunk: 1000"
        echo "    skip: {limit: 1000000}"
        echo "    rejects: \"rejects/\${execution.id}-\${params.how}.csv\""
        echo "    reader:"
        echo "      query: {connection: app, sql: \"SELECT id, note, points FROM t\", key: [id]}"
        echo "    writer:"
        echo "      file: {path: \"$path\"$WRITER_EXTRA}"
        for extra in "$@"; do echo "    $extra"; done
    } > "$file"
}

# ---------------------------------------------------- formats, by oracle
WRITER_EXTRA="" export_job csv.yaml 'ref/${params.how}.csv'
WRITER_EXTRA="" export_job jsonl.yaml 'ref/${params.how}.jsonl'
expect_exit 0 "$NS" run csv.yaml how=ref
expect_exit 0 "$NS" run jsonl.yaml how=ref
[ -f ref/ref.csv ] && [ -f ref/ref.jsonl ] || fail "no output"
ls ref | grep part > /dev/null && fail "a partial file was left: $(ls ref)"
python3 - "$ROWS" "$BAD_ROWS" <<'PY' || exit 1
import csv, json, sys
n, nbad = int(sys.argv[1]), int(sys.argv[2])
want = {}
for line in open("rows.tsv"):
    i, v, p = line.rstrip("\n").split("\t")
    want[i] = (None if v == "N" else bytes.fromhex(v).decode(), p)
bad = {str(i) for i in range(1000, n + 1, 1000)} if nbad else set()
raw = open("ref/ref.csv", "rb").read().decode()
rows = list(csv.reader(raw.splitlines(keepends=True)))
assert rows[0] == ["id", "note", "points"], rows[0]
ids = [r[0] for r in rows[1:]]
assert len(ids) == n - len(bad), (len(ids), n - len(bad))
assert not (set(ids) & bad), "a bad row was written"
for r in rows[1:]:
    note, p = want[r[0]]
    assert r[1] == ("" if note is None else note) and r[2] == p, (r, note, p)
# NULL is an empty field, the empty string a quoted one.
lines = raw.split("\n")
assert "\n2,plain,14\n" in raw and "\n12,,84\n" in raw and '\n1,"",7\n' in raw, "NULL / '' forms"
got = [json.loads(l) for l in open("ref/ref.jsonl", encoding="utf-8")]
assert len(got) == n - len(bad)
for d in got:
    note, p = want[d["id"]]
    assert list(d) == ["id", "note", "points"] and d["note"] == note and d["points"] == p, d
print(f"csv and jsonl: {len(ids)} rows match the source")
PY
if [ "$BAD_ROWS" -gt 0 ]; then
    # The rejects: each bad row once, by line (its place in the query) and column.
    n=$(grep -c ',22021,' rejects/1-ref.csv || true)
    assert_eq "$n" "$BAD_ROWS" "rejected rows"
    grep -q '^1000,note,22021,invalid UTF-8 at byte 2 of the value' rejects/1-ref.csv ||
        fail "the invalid UTF-8 row is not named: $(head -3 rejects/1-ref.csv)"
    grep -q '^2000,note,22021,"the text holds a NUL byte' rejects/1-ref.csv ||
        fail "the NUL row is not named"
fi
assert_eq "$(sed -n 2p ref/ref.csv)" '1,"",7' "the first row"

# header: false, format given against the extension
WRITER_EXTRA=", header: false" export_job nohead.yaml 'nohead.csv'
expect_exit 0 "$NS" run nohead.yaml
assert_eq "$(head -n 1 nohead.csv)" '1,"",7' "header: false"
WRITER_EXTRA=", format: jsonl" export_job forced.yaml 'forced.txt'
expect_exit 0 "$NS" run forced.yaml
cmp -s forced.txt ref/ref.jsonl || fail "format: jsonl differs from the .jsonl output"

# ------------------------------------------------------ the loader's words
WRITER_EXTRA=", format: xml" export_job bad1.yaml 'x.csv'
expect_exit 2 "$NS" validate bad1.yaml
expect_err "bad1.yaml:14: steps[0].writer.file.format: must be csv or jsonl"
WRITER_EXTRA=", header: true" export_job bad2.yaml 'x.jsonl'
expect_exit 2 "$NS" validate bad2.yaml
expect_err "steps[0].writer.file.header: only for format: csv"
WRITER_EXTRA=", paht: y" export_job bad3.yaml 'x.csv'
expect_exit 2 "$NS" validate bad3.yaml
expect_err "steps[0].writer.file.paht: unknown key (expected one of: path, format, header)"
WRITER_EXTRA="" export_job bad4.yaml 'x.csv'
sed -i 's/file: {path: "x.csv"}/file: {format: csv}/' bad4.yaml
expect_exit 2 "$NS" validate bad4.yaml
expect_err "bad4.yaml:14: steps[0].writer.file.path: is required: the file to write"

# ------------------------------------------------ another run's file stays
echo "someone else's" > mine.csv
WRITER_EXTRA="" export_job foreign.yaml 'mine.csv'
expect_exit 1 "$NS" run foreign.yaml how=a
expect_err "writer.file $T/mine.csv already holds what another run (the file does not say which) wrote"
assert_eq "$(cat mine.csv)" "someone else's" "a foreign file was touched"
ln -s /etc/passwd link.csv
WRITER_EXTRA="" export_job link.yaml 'link.csv'
expect_exit 1 "$NS" run link.yaml how=b
expect_err "it is a symbolic link"

# ----------------------------------------- a restart cut back, and refused
WRITER_EXTRA="" export_job cut.yaml 'cut.csv'
expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=5 "$NS" run cut.yaml how=cut
part=$(ls cut.csv.*.part)
[ ! -e cut.csv ] || fail "the output was published before the step ended"
# The killed run synced chunk 5's rows; its checkpoint says chunk 4.
truncate -s 10 "$part"
expect_exit 1 "$NS" run cut.yaml how=cut
expect_err "10 bytes, fewer than the"
expect_err "--restart-from-beginning"
rm "$part"
expect_exit 1 "$NS" run cut.yaml how=cut
expect_err "is gone, and so is $T/cut.csv"
# A partial file without its tag (a run killed between creating and
# tagging it) named for an execution of this instance goes with the rest;
# one named for an execution this instance does not have stays.
echo "untagged" > "$part"
echo "someone's" > cut.csv.999.part
expect_exit 0 "$NS" run cut.yaml how=cut --restart-from-beginning
cmp -s cut.csv ref/ref.csv || fail "the output after --restart-from-beginning differs"
assert_eq "$(cat cut.csv.999.part)" "someone's" "another's partial file"
rm cut.csv.999.part
ls | grep 'cut.csv.*part' > /dev/null && fail "partial files left: $(ls)"

# A run that died with its output published but the step not recorded.
expect_exit 97 env NIGHTSHIFT_TEST_EXIT_AFTER_FINISH=1 "$NS" run csv.yaml how=fin
expect_exit 0 "$NS" run csv.yaml how=fin
cmp -s ref/fin.csv ref/ref.csv || fail "the output after a crash past publishing differs"

# An ${env.X} in the path is a secret: the checkpoint keeps the template,
# and no message, log or repository row holds its value.
export OUTDIR=$T/s3cr3t-out
WRITER_EXTRA="" export_job env.yaml '${env.OUTDIR}/e.csv'
expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=3 "$NS" run env.yaml
cat "$T/err" > env.log
expect_exit 0 "$NS" run env.yaml
cat "$T/err" "$T/out" >> env.log
cmp -s "$OUTDIR/e.csv" ref/ref.csv || fail "the output under \${env.OUTDIR} differs"
sqlite3 repo.db .dump > repo.sql
grep -q 's3cr3t' repo.sql env.log && fail "the value of \${env.OUTDIR} was written: $(grep -ho '.\{40\}s3cr3t.\{20\}' repo.sql env.log | head -2)"
grep -q 'env.OUTDIR' repo.sql || fail "the checkpoint does not keep the path's template"

# ------------------------------------- a full disk, a read-only file system
# A small file system of the test's own (a mount namespace): the export
# fills it, fails naming the file, and keeps what it committed; given room,
# the next run resumes and publishes the file an uninterrupted run writes.
# On a read-only one the export fails before it reads a row.
unshare -m true 2> /dev/null || fail "unshare -m is not permitted here: the test mounts a small file system"
mkdir full ro
WRITER_EXTRA="" export_job full.yaml 'full/f.csv'
WRITER_EXTRA="" export_job ro.yaml 'ro/r.csv'
unshare -m bash -c '
    mount -t tmpfs -o size=256k none full || exit 1
    "$0" run full.yaml how=full > full1.out 2> full1.err; echo $? > full1.rc
    ls full > full1.ls
    mount -o remount,size=256m full
    "$0" run full.yaml how=full > full2.out 2> full2.err; echo $? > full2.rc
    cmp -s full/f.csv ref/ref.csv; echo $? > full2.cmp
    ls full > full2.ls
    mount -t tmpfs -o ro,size=1m none ro || exit 1
    "$0" run ro.yaml how=ro > ro.out 2> ro.err; echo $? > ro.rc
' "$NS" || fail "cannot mount the small file systems"
assert_eq "$(cat full1.rc)" 1 "the export on a full disk: exit status"
grep -q "full/f.csv.*No space left on device" full1.err || fail "the full disk is not named: $(cat full1.err)"
grep -qx 'f.csv' full1.ls && fail "a file was published from a full disk: $(cat full1.ls)"
assert_eq "$(cat full2.rc)" 0 "the export given room: exit status ($(cat full2.err))"
grep -q "resuming after chunk [1-9]" full2.err || fail "the export given room did not resume: $(cat full2.err)"
assert_eq "$(cat full2.cmp)" 0 "the export given room differs from an uninterrupted one"
assert_eq "$(cat full2.ls)" "f.csv" "the files left on the small file system"
assert_eq "$(cat ro.rc)" 1 "the export to a read-only file system: exit status"
grep -q "ro/r.csv.*Read-only file system" ro.err || fail "the read-only file system is not named: $(cat ro.err)"
grep -q "read 0 " ro.out ro.err || fail "the export to a read-only file system read rows: $(cat ro.out ro.err)"

# ------------------------------------------------------------ kill -9
export NIGHTSHIFT_REPOSITORY=$KILL_REPOSITORY
WRITER_EXTRA="" export_job kill.yaml 'killed/out.jsonl'
repo_sql() { # SQL on the repository's table (schema-qualified on PostgreSQL)
    local t=$1
    [[ $NIGHTSHIFT_REPOSITORY == postgresql:* ]] && t=nightshift.$1
    db_sql "$NIGHTSHIFT_REPOSITORY" "${2//TABLE/$t}" 2>/dev/null || echo 0
}
kills=0 faults=0 done=0
for i in $(seq 1 60); do
    if [ $((i % 3)) == 0 ]; then
        # Die between syncing a chunk's bytes and committing it, a few
        # chunks on (chunks count across the instance's executions).
        chunks=$(repo_sql ns_step_execution "SELECT coalesce(sum(commit_count), 0) FROM TABLE")
        rc=0
        NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=$((chunks + RANDOM % 20 + 1)) \
            "$NS" run kill.yaml how=k > /dev/null 2> "kill-$i.log" || rc=$?
        [ $rc == 98 ] && faults=$((faults + 1))
    else
        d=$(python3 -c "import random; random.seed($SEED * 1000 + $i); print(round(random.uniform(0.02, 0.25), 3))")
        "$NS" run kill.yaml how=k > /dev/null 2> "kill-$i.log" & pid=$!
        sleep "$d"
        kill -9 $pid 2>/dev/null && kills=$((kills + 1))
        rc=0; { wait $pid; } 2>/dev/null || rc=$?
    fi
    if [ $rc == 0 ]; then done=1; break; fi
    # A kill that lands after the run recorded its end (the process still
    # exiting): the export is complete, as a run that exited 0.
    if [ $rc == 137 ] && [ "$(repo_sql ns_job_execution "SELECT status FROM TABLE ORDER BY id DESC LIMIT 1")" == COMPLETED ]; then
        done=1
        break
    fi
    [ $rc == 137 ] || [ $rc == 98 ] || { cat "kill-$i.log" >&2; fail "run $i exited $rc"; }
    # Published only whole: a kill that lands between the publishing and
    # the run's recording its end leaves the whole output (seen once in 60
    # kills), which the next run takes as it is.
    if [ -e killed/out.jsonl ] && ! cmp -s killed/out.jsonl ref/ref.jsonl; then
        fail "run $i: the output was published unfinished"
    fi
    [ $((kills + faults)) -ge 24 ] && break
done
[ $kills -ge 10 ] && [ $faults -ge 5 ] || fail "only $kills kills and $faults faults landed; enlarge EXPORT_ROWS"
[ $done == 1 ] || expect_exit 0 "$NS" run kill.yaml how=k
cmp -s killed/out.jsonl ref/ref.jsonl ||
    fail "after $kills kills and $faults faults the output differs from an uninterrupted run"
# The repository's history agrees: every row counted written once.
assert_eq "$(repo_sql ns_step_execution "SELECT sum(write_count) FROM TABLE")" "$(wc -l < ref/ref.jsonl)" \
    "rows the repository recorded as written"
left=$(ls killed)
assert_eq "$left" "out.jsonl" "files left beside the output"
echo "kill -9: $kills kills and $faults faults, output byte-identical, no partial file left"

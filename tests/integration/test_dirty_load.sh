#!/usr/bin/env bash
# A dirty CSV of 30,000 rows with every error class of docs/jobs.md, "Reader `csv`" and "Rejects file"
# loads exactly its good rows and rejects every bad one with its start line
# and code; counters reconcile; a second run is refused. Then the same with
# 7-byte reads, which must change nothing.
source "$(dirname "$0")/lib.sh"
python3 "$NS_SRC/tests/integration/gen_dirty.py" 30000 in.csv want_rejects.txt want_ids.txt
cp "$NS_SRC/tests/integration/dirty.yaml" job.yaml

rejects_of() { # "line code" of every reject in the given files, in file order
    python3 - "$@" <<'PY'
import csv, sys
for path in sys.argv[1:]:
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        assert next(r) == ["line", "column", "code", "message", "record"], path
        for row in r:
            print(row[0], row[2])
PY
}

load() { # load TARGET: one full run into a fresh target, then check everything
    export TARGET_DB="$T/$1.db"
    sqlite3 "$TARGET_DB" < "$NS_SRC/tests/integration/dirty.sql"
    expect_exit 0 "$NS" run job.yaml file=in.csv
    id=$("$NS" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    rejects_of rejects/dirty-load-"$id".csv > got_rejects.txt
    diff -u want_rejects.txt got_rejects.txt >&2 || fail "rejects differ from the expected lines/codes"
    sql "$TARGET_DB" "SELECT id FROM items ORDER BY id" > got_ids.txt
    diff -q want_ids.txt got_ids.txt >/dev/null || fail "loaded ids differ from the good rows"
    read=$(show_field "$id" "['steps'][0]['read_count']")
    written=$(show_field "$id" "['steps'][0]['write_count']")
    skipped=$(show_field "$id" "['steps'][0]['read_skip_count'] + d['steps'][0]['write_skip_count']")
    assert_eq "$read" 30000 "read_count"
    assert_eq "$written" "$(wc -l < want_ids.txt)" "write_count"
    assert_eq "$((written + skipped))" "$read" "read = written + skipped"
    assert_eq "$skipped" "$(wc -l < want_rejects.txt)" "skip count"
    # Every class is present in the expected set (the test data is not trivial).
    for code in NS_ENCODING NS_FIELD_COUNT NS_CSV_QUOTE 22P02 22007 22003 22001 23502 23514 23505 23503; do
        grep -q " $code\$" want_rejects.txt || fail "test data lacks $code"
    done
    # The record text is kept exactly, invalid bytes as \xHH.
    grep -q 'bad\\xFFname' rejects/dirty-load-"$id".csv || fail "invalid byte not written as \\xFF"
}

load target1
expect_exit 4 "$NS" run job.yaml file=in.csv
expect_err "already completed"

export NIGHTSHIFT_REPOSITORY="sqlite:$T/repo2.db" NIGHTSHIFT_CSV_READ_SIZE=7
rm -rf rejects
load target2
echo "dirty load: ok ($(wc -l < want_rejects.txt) rejects checked)"

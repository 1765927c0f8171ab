#!/usr/bin/env bash
# bench/pg-to-file: a 1M-row, 10-column PostgreSQL table exported to a file:
# nightshift through the keyset query reader and the file writer (chunked,
# each chunk synced to disk and checkpointed, restartable) vs psql's
# `\copy (SELECT ... ORDER BY id) TO FILE` (one stream, nothing synced, not
# restartable). Starts its own server. Each class of data the writer treats
# differently, alone and mixed:
#   clean     the plain table to CSV; the two files must be identical
#   jsonl     the same rows as JSON Lines (\copy of row_to_json: the same
#             number of lines)
#   quoting   every text field holding a quote, a comma and a line break, so
#             every one is quoted and escaped; the files must be identical
#   sqlite-clean  the table copied to SQLite, exported clean, vs `sqlite3
#             -csv` (the same rows; the baseline of the next three)
#   bad-0.1%  0.1% and 1% of the rows holding bytes that are not UTF-8:
#   bad-1%    nightshift rejects each, with its line, into the rejects file;
#             sqlite3 writes them as they are. From SQLite: PostgreSQL holds no
#             invalid UTF-8 in a UTF8 database and refuses to send it from a
#             SQL_ASCII one to a UTF-8 client (the query fails as a whole)
#   mixed     quoting and 1% bad rows together
# Every class checks the rows written and rejected. Prints, per class, times, medians and the ratio; then the average and the
# worst ratio.
#
# usage: bench/pg-to-file/run.sh [NIGHTSHIFT_BINARY] ; ROWS=, RUNS= override
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh" "$@"
pg_users

quoted="id, '\"' || email || '\", ' || E'\\n' AS email, 'a \"' || name || '\",' AS name,
        age, score, signup, last_login, active, balance, country"
psql "$url" -qc "CREATE TABLE users_q AS SELECT $quoted FROM users" \
    -c "ALTER TABLE users_q ADD PRIMARY KEY (id)" -c "VACUUM ANALYZE users_q"
# The SQLite copy, with the bad rows PostgreSQL cannot hold: a UTF8 database
# refuses invalid UTF-8, and a SQL_ASCII one refuses to send it to a UTF-8
# client (the query fails, so no row can be rejected on its own).
lite="$data/source.db"
rm -f "$lite"
psql "$url" -qc "\\copy users TO '$data/users.csv' WITH (FORMAT csv)"
cols="(id INTEGER PRIMARY KEY, email TEXT, name TEXT, age INTEGER, score REAL, signup TEXT,
    last_login TEXT, active TEXT, balance TEXT, country TEXT)"
sqlite3 "$lite" "CREATE TABLE users $cols" "CREATE TABLE bad_1 $cols" "CREATE TABLE bad_10 $cols" \
    "CREATE TABLE mixed $cols" ".import --csv $data/users.csv users" \
    "INSERT INTO bad_1 SELECT * FROM users" "INSERT INTO bad_10 SELECT * FROM users" \
    "INSERT INTO mixed SELECT id, '\"' || email || '\", ' || char(10), 'a \"' || name || '\",',
        age, score, signup, last_login, active, balance, country FROM users" \
    "UPDATE bad_1 SET name = name || CAST(X'FF' AS TEXT) WHERE id % 1000 = 0" \
    "UPDATE bad_10 SET name = name || CAST(X'C328' AS TEXT) WHERE id % 100 = 0" \
    "UPDATE mixed SET name = name || CAST(X'FF' AS TEXT) WHERE id % 100 = 0"
rm "$data/users.csv"

job() { # job URL TABLE OUT: the job file exporting TABLE to OUT
    cat > "$data/job.yaml" <<EOF
job: bench-pg-to-file
connections:
  db: "$1"
steps:
  - name: export
    chunk: 50000
    skip: {limit: 100000}
    rejects: "$data/rejects.csv"
    reader:
      query: {connection: db, sql: "SELECT * FROM $2", key: [id]}
    writer:
      file: {path: "$3"}
EOF
}
run_ns() {
    rm -f "$data"/repo.db* "$data/rejects.csv" "$out"
    NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" CI=1 "$ns" run "$data/job.yaml"
}
run_copy() {
    rm -f "$data/copy.out"
    if [[ $cls_url == sqlite:* ]]; then
        sqlite3 -csv -header "${cls_url#sqlite:}" "$ref_sql" > "$data/copy.out"
    else
        psql "$cls_url" -qc "\\copy ($ref_sql) TO '$data/copy.out' $ref_opts"
    fi
}
lines() { wc -l < "$1"; }

ratios=()
# class NAME URL TABLE FORMAT BAD: one class, BAD rows of which nightshift rejects.
class() {
    local name=$1 table=$3 ext=$4 bad=$5
    cls_url=$2 out="$data/ns.$ext"
    if [ "$ext" == jsonl ]; then
        ref_sql="SELECT row_to_json(u) FROM $table u ORDER BY id" ref_opts=""
    else
        ref_sql="SELECT * FROM $table ORDER BY id" ref_opts="WITH (FORMAT csv, HEADER true)"
    fi
    job "$cls_url" "$table" "$out"
    echo "--- $name ($table, $ext, $bad rows rejected)"
    versus "$(if [[ $cls_url == sqlite:* ]]; then echo "sqlite3 -csv"; else echo "\\copy TO"; fi)" run_copy run_ns 1.50
    ratios+=("$(echo "$m_ns / $m_ref" | bc -l)")
    if [ "$ext" == jsonl ]; then
        [ "$(lines "$out")" == "$rows" ] || { echo "$name: nightshift wrote $(lines "$out") lines" >&2; exit 1; }
    elif [ "$bad" == 0 ] && [[ $cls_url != sqlite:* ]]; then
        cmp -s "$out" "$data/copy.out" || { echo "$name: nightshift's file differs from \\copy's" >&2; exit 1; }
    fi
    local got
    got=$(python3 -c "import csv,sys; print(sum(1 for _ in csv.DictReader(open(sys.argv[1], newline=''))) if __import__('os').path.exists(sys.argv[1]) else 0)" "$data/rejects.csv")
    [ "$got" == "$bad" ] || { echo "$name: $got rejects, want $bad" >&2; exit 1; }
    [ "$ext" == jsonl ] || python3 - "$out" "$((rows - bad))" <<'PY' || exit 1
import csv, sys
n = sum(1 for _ in csv.reader(open(sys.argv[1], encoding="utf-8", newline=""))) - 1
assert n == int(sys.argv[2]), f"the file holds {n} rows, want {sys.argv[2]}"
PY
}

class clean "$url" users csv 0
class jsonl "$url" users jsonl 0
class quoting "$url" users_q csv 0
class sqlite-clean "sqlite:$lite" users csv 0
class bad-0.1% "sqlite:$lite" bad_1 csv $((rows / 1000))
class bad-1% "sqlite:$lite" bad_10 csv $((rows / 100))
class mixed "sqlite:$lite" mixed csv $((rows / 100))
printf '%s\n' "${ratios[@]}" | awk '{s += $1; if ($1 > w) w = $1} END {printf "ratio over the %d classes: average %.2f, worst %.2f (target <= 1.50)\n", NR, s / NR, w}'

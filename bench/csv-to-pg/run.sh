#!/usr/bin/env bash
# bench/csv-to-pg: 1M rows x 12 columns into a PostgreSQL table with a primary
# key, a unique index, NOT NULL columns, four CHECK constraints and a foreign
# key (schema.sql: accounts), on a server the script starts (default
# durability: fsync on). The yardstick is `psql \copy` of the clean file,
# measured in the same run. nightshift loads the clean file, then, at 0.1%
# and 1% bad rows, a file for each class of bad row (classes.py: invalid
# UTF-8, a field too few, an integer, a date, NULL in a NOT NULL column,
# each CHECK (an IN list, a range, a date against CURRENT_DATE, lower()),
# a UNIQUE and a primary-key collision with an earlier row, a foreign key)
# and one with all twelve mixed; then the clean file into a table
# already holding 5% of its rows, and holding all of them (a re-run); last,
# into the table with a trigger that refuses rows (trigger.sql), the
# trigger's class alone and all thirteen mixed, against \copy into that
# table. Every load is checked: the rows loaded and the rows rejected,
# exactly.
# Prints one ratio per file against clean \copy, the worst per rate, and
# nightshift's peak RSS on the clean file.
#
# usage: bench/csv-to-pg/run.sh [NIGHTSHIFT_BINARY] ; ROWS=, RUNS= override;
#        FILES="clean check-points-0.1 ..." loads only those (clean always)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh" "$@"
users=$(users_csv)
# the files of this classes.py (another's are not these)
files="$data/classes-$rows-$(md5sum < "$here/classes.py" | cut -c1-8)"
[ -f "$files/trigger-mixed-1.csv.bad" ] || python3 "$here/classes.py" "$users" "$files"
clean="$files/clean.csv"
classes="utf8 fields int date notnull check-status check-points check-date check-lower unique pk fk mixed"
all="clean"
for rate in 0.1 1; do for c in $classes; do all+=" $c-$rate"; done; done
all+=" existing-5 existing-100 trigger-0.1 trigger-mixed-0.1 trigger-1 trigger-mixed-1"
sel=${FILES:-$all}
[[ " $sel " == *" clean "* ]] || sel="clean $sel"
pg_start
echo "input: $rows rows ($(du -h "$clean" | cut -f1)); $runs runs each; $(nproc) cores"

reset() { # a fresh table, repository and checkpoint for every load (not timed); with
    # the trigger for a file named trigger-*
    psql "$url" -q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS nightshift_checkpoint" \
        -f "$here/schema.sql" $([[ ${1:-} == trigger* ]] && echo "-f $here/trigger.sql") -c "CHECKPOINT"
    # A fresh repository's execution 1 writes rejects-1.csv again: the old one
    # goes (nightshift never overwrites another execution's file).
    rm -f "$data"/repo.db* "$data"/rejects-*.csv
}
preload() { # the rows a file name says are in the table before the load
    case $1 in
    existing-5) psql "$url" -qc "\\copy accounts FROM '$files/existing-5.csv' WITH (FORMAT csv, HEADER true)" ;;
    existing-100) psql "$url" -qc "\\copy accounts FROM '$clean' WITH (FORMAT csv, HEADER true)" ;;
    esac
    psql "$url" -qc "CHECKPOINT"
}
input() { case $1 in existing-*) echo "$clean" ;; *) echo "$files/$1.csv" ;; esac; }
bad_of() { case $1 in existing-100) echo "$rows" ;; *) grep -c . "$files/$1.csv.bad" || true ;; esac; }
run_ns() { # run_ns NAME: the load alone is timed (secs), not the preload
    NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" BENCH_URL="$url" BENCH_OUT="$data" CI=1 \
        /usr/bin/time -f "%M" -o "$data/rss" "$ns" run "$here/job.yaml" file="$(input "$1")"
}
run_ref() { psql "$url" -qc "\\copy accounts FROM '$clean' WITH (FORMAT csv, HEADER true)"; }
check() { # check NAME: the table and the rejects file hold exactly what they should
    local bad loaded rejected
    bad=$(bad_of "$1")
    loaded=$(psql "$url" -Atc "SELECT count(*) FROM accounts")
    rejected=$(python3 -c "import csv, glob, sys; print(sum(1 for f in glob.glob(sys.argv[1] + '/rejects-*.csv') for _ in csv.DictReader(open(f, newline='', encoding='utf-8'))))" "$data")
    case $1 in existing-*) want=$rows ;; *) want=$((rows - bad)) ;; esac
    [ "$loaded" == "$want" ] && [ "$rejected" == "$bad" ] ||
        { echo "$1: $loaded rows loaded (want $want), $rejected rejected (want $bad): no figures" >&2; exit 1; }
}

per_file "\\copy"

# pgloader, when installed (Debian package pgloader): PGLOADER_RUNS runs
# (default 1: it is slow) on the clean file and on mixed-0.1.
if command -v pgloader > /dev/null; then
    sock=$(cat "$state/dir")
    run_pgloader() { # run_pgloader FILE
        cat > "$data/load.pgl" <<PGL
LOAD CSV FROM '$1' (id, email, name, age, score, signup, last_login, active, balance, country, status, points, ref)
     INTO postgresql://postgres@unix:$sock:54329/postgres?tablename=accounts
     WITH skip header = 1, fields terminated by ',', fields optionally enclosed by '"';
PGL
        (cd "$data" && pgloader --no-ssl-cert-verification load.pgl)
    }
    pl_c=() pl_d=()
    for i in $(seq "${PGLOADER_RUNS:-1}"); do
        reset
        t=$(secs run_pgloader "$clean"); pl_c+=("$t")
        reset
        t=$(secs run_pgloader "$files/mixed-0.1.csv"); pl_d+=("$t")
    done
    pl_rows=$(psql "$url" -Atc "SELECT count(*) FROM accounts")
    m_pc=$(printf '%s\n' "${pl_c[@]}" | median)
    m_pd=$(printf '%s\n' "${pl_d[@]}" | median)
    printf 'pgloader: clean %.2fs (%.2f x \\copy); mixed-0.1 %.2fs, after which the table held %s rows (the file has %s good ones)\n' \
        "$m_pc" "$(echo "$m_pc / $m_ref" | bc -l)" "$m_pd" "$pl_rows" "$((rows - $(bad_of mixed-0.1)))"
else
    echo "pgloader: not installed (apt-get install pgloader) - not compared"
fi

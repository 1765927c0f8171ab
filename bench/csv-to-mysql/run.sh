#!/usr/bin/env bash
# bench/csv-to-mysql: bench/csv-to-pg's load into MariaDB: 1M rows x 13
# columns into a table with a primary key, a unique index, NOT NULL columns,
# four CHECK constraints and a foreign key to a 1M-row table (schema.sql),
# on a server the script starts (MariaDB's durability defaults: the log
# flushed at every commit, the doublewrite buffer; a 1 GiB buffer pool). The
# yardstick is a DBA's `LOAD DATA LOCAL INFILE` of the clean file with the
# mariadb client, measured in the same run. nightshift loads the clean file,
# then, at 0.1% and 1% bad rows, csv-to-pg's file for each class of bad row
# (bench/csv-to-pg/classes.py: invalid UTF-8, a field too few, an integer, a
# date, NULL in a NOT NULL column, each CHECK, a UNIQUE and a primary-key
# collision with an earlier row, a foreign key) and one with all twelve
# mixed; last, into the table with a trigger that SIGNALs on some rows
# (trigger.sql), the trigger's class alone and all thirteen mixed, against
# LOAD DATA into that table. Every load is checked: the rows loaded and the
# rows rejected, exactly.
# Prints one ratio per file against the clean LOAD DATA, the worst per
# rate, and nightshift's peak RSS on the clean file.
#
# usage: bench/csv-to-mysql/run.sh [NIGHTSHIFT_BINARY] ; ROWS=, RUNS= override;
#        FILES="clean check-points-0.1 ..." loads only those (clean always)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh" "$@"
users=$(users_csv)
pgb="$here/../csv-to-pg"
# csv-to-pg's files (the same classes.py makes the same files)
files="$pgb/data/classes-$rows-$(md5sum < "$pgb/classes.py" | cut -c1-8)"
[ -f "$files/trigger-mixed-1.csv.bad" ] || python3 "$pgb/classes.py" "$users" "$files"
clean="$files/clean.csv"
classes="utf8 fields int date notnull check-status check-points check-date check-lower unique pk fk mixed"
all="clean"
for rate in 0.1 1; do for c in $classes; do all+=" $c-$rate"; done; done
all+=" trigger-0.1 trigger-mixed-0.1 trigger-1 trigger-mixed-1"
sel=${FILES:-$all}
[[ " $sel " == *" clean "* ]] || sel="clean $sel"

state="$data/my"
trap 'bash "$here/../../tests/mysql/my-ctl.sh" stop "$state" > /dev/null' EXIT
NS_MY_DURABLE=1 NS_MY_POOL=1G bash "$here/../../tests/mysql/my-ctl.sh" start "$state"
sock=$(cat "$state/sock")
my() { mariadb --no-defaults -S "$sock" -uroot --local-infile=1 --batch --skip-column-names bench "$@"; }
mariadb --no-defaults -S "$sock" -uroot -e "CREATE DATABASE IF NOT EXISTS bench CHARACTER SET utf8mb4"
url="mysql://root@localhost/bench?socket=$sock"
echo "input: $rows rows ($(du -h "$clean" | cut -f1)); $runs runs each; $(nproc) cores"

reset() { # a fresh table, repository and checkpoint for every load (not timed); with
    # the trigger for a file named trigger-*
    my -e "DROP TABLE IF EXISTS nightshift_checkpoint"
    my < "$here/schema.sql"
    [[ ${1:-} == trigger* ]] && my < "$here/trigger.sql"
    rm -f "$data"/repo.db* "$data"/rejects-*.csv
}
bad_of() { grep -c . "$files/$1.csv.bad" || true; }
preload() { :; } # nothing is in the table before a load
run_ns() {
    NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" BENCH_URL="$url" BENCH_OUT="$data" CI=1 \
        /usr/bin/time -f "%M" -o "$data/rss" "$ns" run "$here/job.yaml" file="$files/$1.csv"
}
# The DBA's load: the clean file, as it is, in one statement.
run_ref() {
    my -e "LOAD DATA LOCAL INFILE '$clean' INTO TABLE accounts CHARACTER SET utf8mb4
           FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\n' IGNORE 1 LINES"
}
check() { # check NAME: the table and the rejects file hold exactly what they should
    local bad loaded rejected want
    bad=$(bad_of "$1")
    loaded=$(my -e "SELECT count(*) FROM accounts")
    rejected=$(python3 -c "import csv, glob, sys; print(sum(1 for f in glob.glob(sys.argv[1] + '/rejects-*.csv') for _ in csv.DictReader(open(f, newline='', encoding='utf-8'))))" "$data")
    want=$((rows - bad))
    [ "$loaded" == "$want" ] && [ "$rejected" == "$bad" ] ||
        { echo "$1: $loaded rows loaded (want $want), $rejected rejected (want $bad): no figures" >&2; exit 1; }
}

per_file "LOAD DATA"

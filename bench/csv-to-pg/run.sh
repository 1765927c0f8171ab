#!/usr/bin/env bash
# bench/csv-to-pg: 1M rows x 10 columns into a PostgreSQL table with a primary
# key and a unique index: nightshift vs `psql \copy` on the clean file, and
# nightshift on the same file with 0.1% bad rows of every class (which \copy
# cannot load at all). Starts its own server (default durability: fsync on).
# Prints each time, medians, ratios and nightshift's peak RSS.
#
# usage: bench/csv-to-pg/run.sh [NIGHTSHIFT_BINARY] ; ROWS=, RUNS= override
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh" "$@"
clean=$(users_csv)
dirty="$data/users-$rows-dirty.csv"
[ -f "$dirty" ] && [ -f "$dirty.bad" ] || python3 "$here/dirty.py" "$clean" "$dirty"
pg_start
echo "input: $rows rows ($(du -h "$clean" | cut -f1)); $runs runs each; $(nproc) cores"

reset() { # a fresh table, repository and checkpoint for every run
    psql "$url" -q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS nightshift_checkpoint" \
        -f "$here/schema.sql" -c "CHECKPOINT"
    # A fresh repository's execution 1 writes rejects-1.csv again: the old one
    # goes (nightshift never overwrites another execution's file).
    rm -f "$data"/repo.db* "$data"/rejects-*.csv
}
run_ns() {
    reset
    BENCH_URL="$url" BENCH_OUT="$data" NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" CI=1 \
        /usr/bin/time -f "%M" -o "$data/rss" "$ns" run "$here/job.yaml" file="$1"
}
run_copy() { reset; psql "$url" -qc "\\copy users FROM '$clean' WITH (FORMAT csv, HEADER true)"; }

ns_t=() ns_d=() cp_t=() rss=()
for i in $(seq "$runs"); do
    t=$(secs run_copy); cp_t+=("$t")
    t=$(secs run_ns "$clean"); ns_t+=("$t"); rss+=("$(cat "$data/rss")")
    t=$(secs run_ns "$dirty"); ns_d+=("$t")
    printf 'run %d: \\copy %.2fs  nightshift clean %.2fs  nightshift dirty %.2fs\n' "$i" \
        "${cp_t[-1]}" "${ns_t[-1]}" "${ns_d[-1]}"
done
loaded=$(psql "$url" -Atc "SELECT count(*) FROM users")
want=$(python3 -c "print(sum(1 for _ in open('$dirty', 'rb')) - 1 - $(grep -c . "$dirty.bad"))")
echo "last dirty load: $loaded rows loaded, $want expected"
[ "$loaded" == "$want" ] || { echo "the dirty load is wrong: no figures" >&2; exit 1; }
m_cp=$(printf '%s\n' "${cp_t[@]}" | median)
m_ns=$(printf '%s\n' "${ns_t[@]}" | median)
m_nd=$(printf '%s\n' "${ns_d[@]}" | median)
printf 'median: \\copy %.2fs, nightshift clean %.2fs, nightshift dirty %.2fs\n' "$m_cp" "$m_ns" "$m_nd"
printf 'ratio clean nightshift / \\copy = %.2f (target <= 1.10)\n' "$(echo "$m_ns / $m_cp" | bc -l)"
printf 'ratio dirty nightshift / clean \\copy = %.2f (target <= 1.50)\n' "$(echo "$m_nd / $m_cp" | bc -l)"
printf 'peak RSS of nightshift (clean): %s KB (median)\n' "$(printf '%s\n' "${rss[@]}" | median)"

# pgloader, when installed (Debian package pgloader): PGLOADER_RUNS runs (default 1: it is slow).
if command -v pgloader > /dev/null; then
    sock=$(cat "$state/dir")
    run_pgloader() { # run_pgloader FILE
        reset
        cat > "$data/load.pgl" <<PGL
LOAD CSV FROM '$1' (id, email, name, age, score, signup, last_login, active, balance, country)
     INTO postgresql://postgres@unix:$sock:54329/postgres?tablename=users
     WITH skip header = 1, fields terminated by ',', fields optionally enclosed by '"';
PGL
        (cd "$data" && pgloader --no-ssl-cert-verification load.pgl)
    }
    pl_c=() pl_d=()
    for i in $(seq "${PGLOADER_RUNS:-1}"); do
        t=$(secs run_pgloader "$clean"); pl_c+=("$t")
        t=$(secs run_pgloader "$dirty"); pl_d+=("$t")
    done
    pl_rows=$(psql "$url" -Atc "SELECT count(*) FROM users")
    m_pc=$(printf '%s\n' "${pl_c[@]}" | median)
    m_pd=$(printf '%s\n' "${pl_d[@]}" | median)
    printf 'pgloader: clean %.2fs (%.2f x \\copy); dirty %.2fs, after which the table held %s rows (the file has %s good ones)\n' \
        "$m_pc" "$(echo "$m_pc / $m_cp" | bc -l)" "$m_pd" "$pl_rows" "$want"
else
    echo "pgloader: not installed (apt-get install pgloader) - not compared"
fi

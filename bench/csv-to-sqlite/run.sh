#!/usr/bin/env bash
# bench/csv-to-sqlite: 1M rows x 10 columns into an indexed SQLite table,
# nightshift (checking every value against its column type, chunked commits,
# job repository) vs `sqlite3 .import` (no checks, one transaction), measured
# in the same run. Prints each time, the medians and their ratio.
#
# usage: bench/csv-to-sqlite/run.sh [NIGHTSHIFT_BINARY] ; ROWS=, RUNS= override
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh" "$@"
csv=$(users_csv)
echo "input: $csv ($rows rows, $(du -h "$csv" | cut -f1)); $runs runs each; $(nproc) cores"


run_ns() {
    rm -f "$data"/bench.db* "$data"/repo.db*
    sqlite3 "$data/bench.db" < "$here/schema.sql"
    BENCH_DB="$data/bench.db" NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" CI=1 \
        "$ns" run "$here/job.yaml" file="$csv"
}
run_import() {
    rm -f "$data"/bench.db*
    sqlite3 "$data/bench.db" < "$here/schema.sql"
    sqlite3 "$data/bench.db" ".import --csv --skip 1 $csv users"
}

ns_times=() imp_times=()
for i in $(seq "$runs"); do
    # Alternate the order so neither tool always runs on a warmer cache.
    if [ $((i % 2)) == 1 ]; then
        t=$(secs run_ns); ns_times+=("$t")
        t=$(secs run_import); imp_times+=("$t")
    else
        t=$(secs run_import); imp_times+=("$t")
        t=$(secs run_ns); ns_times+=("$t")
    fi
    printf 'run %d: nightshift %.2fs  sqlite3 .import %.2fs\n' "$i" "${ns_times[-1]}" "${imp_times[-1]}"
done
# Both loaded the same rows (checked on the last nightshift load).
run_ns > /dev/null 2>&1
loaded=$(sqlite3 "$data/bench.db" "SELECT count(*) FROM users")
[ "$loaded" == "$rows" ] || { echo "nightshift loaded $loaded rows, expected $rows" >&2; exit 1; }
m_ns=$(printf '%s\n' "${ns_times[@]}" | median)
m_imp=$(printf '%s\n' "${imp_times[@]}" | median)
printf 'median: nightshift %.2fs (%.0f rows/s), sqlite3 .import %.2fs\n' "$m_ns" \
    "$(echo "$rows / $m_ns" | bc -l)" "$m_imp"
printf 'ratio nightshift / .import = %.2f (target <= 1.00)\n' "$(echo "$m_ns / $m_imp" | bc -l)"

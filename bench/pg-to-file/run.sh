#!/usr/bin/env bash
# bench/pg-to-file: a 1M-row, 10-column PostgreSQL table exported to a CSV
# file: nightshift through the keyset query reader and the file writer
# (chunked, each chunk synced to disk and checkpointed, restartable) vs
# `psql \copy (SELECT * FROM users ORDER BY id) TO FILE CSV HEADER` (one
# stream, nothing synced, not restartable). The two files must be identical.
# Starts its own server. Prints times, medians, ratio.
#
# usage: bench/pg-to-file/run.sh [NIGHTSHIFT_BINARY] ; ROWS=, RUNS= override
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh" "$@"
pg_users

run_ns() {
    rm -f "$data"/repo.db* "$data/ns.csv"
    BENCH_URL="$url" BENCH_OUT="$data/ns.csv" NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" CI=1 "$ns" run "$here/job.yaml"
}
run_copy() {
    rm -f "$data/copy.csv"
    psql "$url" -qc "\\copy (SELECT * FROM users ORDER BY id) TO '$data/copy.csv' WITH (FORMAT csv, HEADER true)"
}

ns_t=() copy_t=()
for i in $(seq "$runs"); do
    t=$(secs run_copy); copy_t+=("$t")
    t=$(secs run_ns); ns_t+=("$t")
    printf 'run %d: \\copy TO %.2fs  nightshift %.2fs\n' "$i" "${copy_t[-1]}" "${ns_t[-1]}"
done
cmp -s "$data/ns.csv" "$data/copy.csv" || { echo "nightshift's file differs from \\copy's" >&2; exit 1; }
m_copy=$(printf '%s\n' "${copy_t[@]}" | median)
m_ns=$(printf '%s\n' "${ns_t[@]}" | median)
printf 'median: \\copy TO %.2fs, nightshift %.2fs\n' "$m_copy" "$m_ns"
printf 'ratio nightshift / \\copy TO = %.2f (target <= 1.50)\n' "$(echo "$m_ns / $m_copy" | bc -l)"

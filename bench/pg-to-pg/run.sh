#!/usr/bin/env bash
# bench/pg-to-pg: a 1M-row, 10-column PostgreSQL table copied into another
# table (primary key + unique index) of the same database: nightshift through
# the keyset query reader and the COPY writer (chunked, restartable) vs one
# `INSERT INTO users_copy SELECT * FROM users` (one statement, not
# restartable). Starts its own server (fsync on). Prints times, medians, ratio.
#
# usage: bench/pg-to-pg/run.sh [NIGHTSHIFT_BINARY] ; ROWS=, RUNS= override
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh" "$@"
pg_users

reset() { # an empty copy table, a fresh repository and checkpoint
    psql "$url" -q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS users_copy, nightshift_checkpoint" \
        -c "CREATE TABLE users_copy (LIKE users INCLUDING ALL)" -c "CHECKPOINT"
    rm -f "$data"/repo.db*
}
run_ns() { reset; BENCH_URL="$url" NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" CI=1 "$ns" run "$here/job.yaml"; }
run_sql() { reset; psql "$url" -qc "INSERT INTO users_copy SELECT * FROM users"; }

versus "INSERT ... SELECT" run_sql run_ns 1.50
[ "$(psql "$url" -Atc "SELECT count(*) FROM users_copy")" == "$rows" ] || { echo "nightshift copied the wrong number of rows" >&2; exit 1; }

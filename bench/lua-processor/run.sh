#!/usr/bin/env bash
# bench/lua-processor: the cost of a Lua processor. The csv-to-sqlite load
# (1M rows x 10 columns into an indexed SQLite table) with a trivial processor
# (`function process(item) return item end`: every item crosses into Lua and
# back) vs the same load without one, measured in the same run. Target: <= 1.3.
#
# usage: bench/lua-processor/run.sh [NIGHTSHIFT_BINARY] ; ROWS=, RUNS= override
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh" "$@"
csv=$(users_csv)
echo "input: $csv ($rows rows); $runs runs each; $(nproc) cores"

run() { # run JOB.yaml
    rm -f "$data"/bench.db* "$data"/repo.db*
    sqlite3 "$data/bench.db" < "$here/../csv-to-sqlite/schema.sql"
    BENCH_DB="$data/bench.db" NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" CI=1 "$ns" run "$1" file="$csv"
}
plain=() lua=()
for i in $(seq "$runs"); do
    if [ $((i % 2)) == 1 ]; then
        t=$(secs run "$here/../csv-to-sqlite/job.yaml"); plain+=("$t")
        t=$(secs run "$here/job.yaml"); lua+=("$t")
    else
        t=$(secs run "$here/job.yaml"); lua+=("$t")
        t=$(secs run "$here/../csv-to-sqlite/job.yaml"); plain+=("$t")
    fi
    printf 'run %d: without processor %.2fs  with Lua processor %.2fs\n' "$i" "${plain[-1]}" "${lua[-1]}"
done
loaded=$(sqlite3 "$data/bench.db" "SELECT count(*) FROM users")
[ "$loaded" == "$rows" ] || { echo "the last load has $loaded rows, expected $rows" >&2; exit 1; }
m_plain=$(printf '%s\n' "${plain[@]}" | median)
m_lua=$(printf '%s\n' "${lua[@]}" | median)
printf 'median: without %.2fs, with Lua %.2fs\n' "$m_plain" "$m_lua"
printf 'ratio with / without = %.2f (target <= 1.30)\n' "$(echo "$m_lua / $m_plain" | bc -l)"

# For scale, not a target: scripts that do work. One field changed, and every
# field read and written back through pairs().
variant() { # variant NAME LUA
    sed "s|function process(item) return item end|$2|" "$here/job.yaml" > "$data/$1.yaml"
    local t=() i
    for i in $(seq "$runs"); do t+=("$(secs run "$data/$1.yaml")"); done
    printf '%s: median %.2fs (%.2f x without)\n' "$1" "$(printf '%s\n' "${t[@]}" | median)" \
        "$(echo "$(printf '%s\n' "${t[@]}" | median) / $m_plain" | bc -l)"
}
variant one-field 'function process(item) item.email = string.lower(item.email) return item end'
variant every-field 'function process(item) for k, v in pairs(item) do item[k] = v end return item end'


# bench/lib.sh - what the benchmark scripts share. Source it after setting
# `here` (the script's directory), passing the script's arguments:
#   here=$(cd "$(dirname "$0")" && pwd); source "$here/../lib.sh" "$@"
# It sets ns (the binary: $1 or build/nightshift), rows ($ROWS, 1M), runs
# ($RUNS, 5) and data (the script's data/ directory, ignored by git).
ns=$(realpath "${1:-$here/../../build/nightshift}")
rows=${ROWS:-1000000}
runs=${RUNS:-5}
data="$here/data"
mkdir -p "$data"

# secs CMD...: the wall time of a command in seconds. A failed run ends the
# benchmark (a ratio of a failed run means nothing). Logs go to $data/last.log.
secs() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > "$data/last.log" 2>&1 || { echo "benchmark run failed: $*" >&2; cat "$data/last.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

# median: the median of the numbers on standard input.
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# users_csv: the clean 10-column CSV of $rows rows, generated once; prints its path.
users_csv() {
    local csv="$here/../csv-to-sqlite/data/users-$rows.csv"
    if [ ! -f "$csv" ]; then
        mkdir -p "$(dirname "$csv")"
        python3 "$here/../csv-to-sqlite/gen.py" "$rows" "$csv"
    fi
    echo "$csv"
}

# pg_start: a PostgreSQL server of the benchmark's own, with default
# durability (fsync on), stopped when the script exits; sets $url and $state.
pg_start() {
    state="$data/pg"
    trap 'NS_PG_FSYNC=on bash "$here/../../tests/pg/pg-ctl.sh" stop "$state" > /dev/null' EXIT
    NS_PG_FSYNC=on bash "$here/../../tests/pg/pg-ctl.sh" start "$state"
    url=$(cat "$state/url")
}

# pg_users: pg_start, then the clean CSV loaded into its table users
# (bench/csv-to-pg/schema.sql) and analyzed.
pg_users() {
    local csv
    csv=$(users_csv)
    pg_start
    psql "$url" -q -f "$here/../csv-to-pg/schema.sql" -c "\\copy users FROM '$csv' WITH (FORMAT csv, HEADER true)" -c "VACUUM ANALYZE users"
    echo "source: $rows rows; $runs runs each; $(nproc) cores"
}

# versus LABEL REF NS TARGET: $runs alternating runs of the reference REF and
# of nightshift's NS (commands or shell functions), each run's times, the
# medians and the ratio nightshift / LABEL against TARGET. Sets m_ref, m_ns.
versus() {
    local label=$1 ref=$2 nsf=$3 target=$4 t i
    local -a rt=() nt=()
    for i in $(seq "$runs"); do
        t=$(secs "$ref")
        rt+=("$t")
        t=$(secs "$nsf")
        nt+=("$t")
        printf 'run %d: %s %.2fs  nightshift %.2fs\n' "$i" "$label" "${rt[-1]}" "${nt[-1]}"
    done
    m_ref=$(printf '%s\n' "${rt[@]}" | median)
    m_ns=$(printf '%s\n' "${nt[@]}" | median)
    printf 'median: %s %.2fs, nightshift %.2fs\n' "$label" "$m_ref" "$m_ns"
    printf 'ratio nightshift / %s = %.2f (target <= %s)\n' "$label" "$(echo "$m_ns / $m_ref" | bc -l)" "$target"
}

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

# per_file LABEL: the load benchmarks' runs (csv-to-pg, csv-to-mysql). Each
# of $runs runs measures the reference load of the clean file (run_ref, LABEL
# in the output), then nightshift on every file of $sel (reset NAME; preload
# NAME; run_ns NAME, timed; check NAME), the reference again every 8 files
# and at the end (a shared machine drifts over the minutes a run takes: the
# yardstick is the median of all). A file named trigger-* is measured against
# the reference into the table with the trigger (reset trigger). Prints one
# ratio per file, the worst per rate and nightshift's peak RSS on the clean
# file; sets m_ref (the reference's median). The caller defines reset,
# preload, run_ref, run_ns, check and bad_of.
per_file() {
    local label=$1 i k f t m ref line
    local -A times=()
    local -a ref_t=() tg_t=() rss=()
    local triggers=false
    rm -f "$data/ratios"
    [[ " $sel " == *" trigger"* ]] && triggers=true
    for i in $(seq "$runs"); do
        reset
        t=$(secs run_ref); ref_t+=("$t")
        line="run $i: $label $(printf %.2f "$t")s"
        if $triggers; then
            reset trigger
            t=$(secs run_ref); tg_t+=("$t")
            line+=" (with the trigger $(printf %.2f "$t")s)"
        fi
        k=0
        for f in $sel; do
            reset "$f"
            preload "$f"
            t=$(secs run_ns "$f")
            check "$f"
            times[$f]+="$t "
            [ "$f" == clean ] && rss+=("$(cat "$data/rss")")
            line+="  $f $(printf %.2f "$t")"
            k=$((k + 1))
            if [ $((k % 8)) == 0 ] || [ "$k" == "$(wc -w <<< "$sel")" ]; then
                reset
                t=$(secs run_ref); ref_t+=("$t")
                line+="  [$label $(printf %.2f "$t")]"
            fi
            if $triggers && [ "$k" == "$(wc -w <<< "$sel")" ]; then
                reset trigger
                t=$(secs run_ref); tg_t+=("$t")
                line+="  [with the trigger $(printf %.2f "$t")]"
            fi
        done
        echo "$line"
    done
    m_ref=$(printf '%s\n' "${ref_t[@]}" | median)
    printf 'median: %s of the clean file %.2fs (%s measurements: %s)\n' "$label" "$m_ref" "${#ref_t[@]}" \
        "$(printf '%s\n' "${ref_t[@]}" | sort -g | awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1}')"
    local m_tg=0
    if $triggers; then
        m_tg=$(printf '%s\n' "${tg_t[@]}" | median)
        printf 'median: %s of the clean file into the table with the trigger %.2fs\n' "$label" "$m_tg"
    fi
    printf '%-18s %8s %8s %8s\n' file "bad rows" median "/ $label"
    for f in $sel; do
        m=$(printf '%s\n' ${times[$f]} | median)
        ref=$m_ref
        [[ $f == trigger* ]] && ref=$m_tg
        printf '%-18s %8s %7.2fs %8.2f\n' "$f" "$(bad_of "$f")" "$m" "$(echo "$m / $ref" | bc -l)"
        echo "$f $(echo "$m / $ref" | bc -l)" >> "$data/ratios"
    done
    for rate in 0.1 1; do
        grep -E -- "-$rate " "$data/ratios" | sort -k2 -g | tail -1 |
            awk -v r="$rate" '{printf "worst at %s%% bad rows: %s, %.2f\n", r, $1, $2}'
    done
    rm -f "$data/ratios"
    printf 'peak RSS of nightshift (clean): %s KB (median)\n' "$(printf '%s\n' "${rss[@]}" | median)"
}

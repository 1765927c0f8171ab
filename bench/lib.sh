# bench/lib.sh - helpers shared by the benchmark scripts; source it.

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

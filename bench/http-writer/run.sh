#!/usr/bin/env bash
# bench/http-writer: N items POSTed one request each to ns-receiver (on
# loopback, started here): nightshift's http writer (templated JSON body,
# Idempotency-Key, chunked checkpoints in an SQLite repository) vs curl
# itself, `curl --parallel --parallel-max C -K CONFIG` (one process, every
# request in its config, its own connection reuse: the fastest way a shell
# script sends them), at concurrency 1, 8 and 32; then at 0.1% and 1% of
# answers 503 (Retry-After: 1 s, which both honour: curl --retry 5), mixed
# (503, dropped connections, 400) and 400s (rejected by nightshift, ignored
# by curl). Prints each ratio, the average and the worst. Target: clean and
# 400s <= 1.00; with retries, see bench/README.md (a chunk commits only when
# each of its requests has an outcome, so a Retry-After holds its chunk up).
#
# usage: bench/http-writer/run.sh [NIGHTSHIFT_BINARY] ; ROWS= (default 20000), RUNS= override
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROWS=${ROWS:-20000}
source "$here/../lib.sh" "$@"
receiver=$(dirname "$ns")/ns-receiver
[ -x "$receiver" ] || { echo "no $receiver (make builds it)" >&2; exit 1; }
echo "$rows requests; $runs runs each; $(nproc) cores; $(curl --version | head -1 | cut -d' ' -f1-2)"

python3 - "$rows" "$data/items.csv" <<'PY'
import sys
n, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w") as f:
    f.write("id,email,status\n")
    for i in range(1, n + 1):
        f.write(f"{i},user{i}@example.org,dormant\n")
PY

pid=
start_receiver() { # start_receiver ARGS...
    [ -n "$pid" ] && { kill "$pid"; wait "$pid" 2>/dev/null || true; }
    rm -f "$data/port"
    "$receiver" --port-file "$data/port" "$@" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do [ -s "$data/port" ] && break; sleep 0.05; done
    port=$(cat "$data/port")
}
trap '[ -n "$pid" ] && kill $pid 2>/dev/null || true' EXIT

job() { # job CONCURRENCY: the job file (chunk: $CHUNK, default 1000)
    cat > "$data/job-$1.yaml" <<EOT
job: bench-http
params:
  port: {type: int, required: true, identifying: false}
steps:
  - name: send
    chunk: ${CHUNK:-1000}
    skip: {limit: 1000000}
    rejects: "$data/rejects.csv"
    retry: {limit: 5, backoff: {initial: 1s, max: 4s}}
    reader: {csv: {path: "$data/items.csv"}}
    writer:
      http:
        url: "http://127.0.0.1:\${params.port}/users/\${item.id}/dormant"
        headers: {Authorization: "Bearer \${env.API_TOKEN}"}
        body: '{"id": \${item.id|json}, "email": \${item.email|json}, "status": \${item.status|json}}'
        concurrency: $1
        timeout: 10s
EOT
}
export API_TOKEN=bench-token
# curl's config: the same requests, bodies and headers
python3 - "$data/items.csv" "$data/curl.cfg" <<'PY'
import csv, json, sys
with open(sys.argv[2], "w") as f:
    for i, r in enumerate(csv.DictReader(open(sys.argv[1]))):
        body = json.dumps({"id": r["id"], "email": r["email"], "status": r["status"]})
        if i:
            f.write("next\n")
        f.write(f'url = "http://127.0.0.1:PORT/users/{r["id"]}/dormant"\n')
        f.write(f"data = {json.dumps(body)}\n")
        f.write('header = "Content-Type: application/json"\nheader = "Authorization: Bearer bench-token"\n')
        f.write('#RETRY\n')
PY

ratios=()
measure() { # measure LABEL CONCURRENCY [retry]: with retry, curl retries too (--retry 5 in every request's section)
    local label=$1 c=$2 retry=${3:-}
    job "$c"
    sed "s/PORT/$port/" "$data/curl.cfg" > "$data/curl-now.cfg"
    [ -n "$retry" ] && sed -i 's/^#RETRY$/retry = 5/' "$data/curl-now.cfg"
    ref() { curl --silent --parallel --parallel-max "$c" -K "$data/curl-now.cfg" > /dev/null; }
    nsrun() {
        rm -f "$data/repo.db"* "$data/rejects.csv"
        NIGHTSHIFT_REPOSITORY="sqlite:$data/repo.db" CI=1 "$ns" run "$data/job-$c.yaml" port="$port"
    }
    local -a rt=() nt=()
    for i in $(seq "$runs"); do
        rt+=("$(secs ref)")
        nt+=("$(secs nsrun)")
        printf '%s run %d: curl %.2fs  nightshift %.2fs\n' "$label" "$i" "${rt[-1]}" "${nt[-1]}"
    done
    local mr mn
    mr=$(printf '%s\n' "${rt[@]}" | median)
    mn=$(printf '%s\n' "${nt[@]}" | median)
    ratios+=("$(echo "$mn / $mr" | bc -l)")
    printf '%s: median curl %.2fs, nightshift %.2fs (%.0f requests/s): ratio %.2f\n' "$label" "$mr" "$mn" \
        "$(echo "$rows / $mn" | bc -l)" "${ratios[-1]}"
}

start_receiver
for c in 1 8 32; do measure "clean, concurrency $c" "$c"; done
for rate in 0.001 0.01; do
    pct=$(echo "$rate * 100" | bc -l | sed 's/0*$//; s/\.$//')
    start_receiver --faults "503=$rate" --retry-after 1 --seed 5
    measure "$pct% 503 (Retry-After 1 s), concurrency 8" 8 retry
    start_receiver --faults "503=$(echo "$rate / 2" | bc -l),reset=$(echo "$rate / 4" | bc -l),400=$(echo "$rate / 4" | bc -l)" --retry-after 1 --seed 7
    measure "$pct% mixed (503, reset, 400), concurrency 8" 8 retry
    start_receiver --faults "400=$rate" --seed 6
    measure "$pct% 400, concurrency 8" 8
done
# The lever: a chunk waits for its slowest request (a Retry-After), so fewer,
# larger chunks wait less often. For scale, not in the average.
start_receiver --faults "503=0.01" --retry-after 1 --seed 5
all=("${ratios[@]}")
CHUNK=5000 measure "1% 503 (Retry-After 1 s), concurrency 8, chunk 5000" 8 retry
ratios=("${all[@]}")
printf '%s\n' "${ratios[@]}" | awk '{s += $1; if ($1 > w) w = $1} END {printf "average ratio %.2f, worst %.2f\n", s / NR, w}'

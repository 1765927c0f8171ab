#!/usr/bin/env bash
# The http writer (docs/jobs.md, "writer: http") against ns-receiver, a real
# HTTP server this test starts on loopback, which injects faults: 429 and 503
# with Retry-After, 500, 400, answers slower than the timeout, dropped
# connections. Every item is delivered or rejected with its status; retries
# are counted; the rate holds over every 1-second window; a kill -9 re-sends
# only the chunk in flight, with the same idempotency keys; a stop reaches a
# run waiting on Retry-After; no secret reaches a log, the repository, the
# rejects file or any part of a request but its own header.
source "$(dirname "$0")/lib.sh"
: "${NS_RECEIVER:?set NS_RECEIVER to the ns-receiver binary}"
export API_TOKEN="tok-$RANDOM-s3cr3t-$RANDOM"

# receiver NAME ARGS...: starts ns-receiver recording to NAME.jsonl; sets $port.
receiver() {
    local name=$1
    shift
    rm -f "$name.port"
    "$NS_RECEIVER" --port-file "$name.port" --record "$name.jsonl" "$@" 2>"$name.log" &
    echo $! > "$name.pid"
    for _ in $(seq 100); do [ -s "$name.port" ] && break; sleep 0.05; done
    [ -s "$name.port" ] || { cat "$name.log"; fail "ns-receiver did not start"; }
    port=$(cat "$name.port")
}
stop_receiver() { kill "$(cat "$1.pid")" 2>/dev/null || true; wait "$(cat "$1.pid")" 2>/dev/null || true; }

# users N: users.csv with ids 1..N
users() {
    python3 -c "
import sys
print('id,email,name')
for i in range(1, int(sys.argv[1]) + 1): print(f'{i},u{i}@example.org,User {i}')" "$1" > users.csv
}

# http_job FILE "KEY: V; KEY: V" [STEP-KEYS...]: WRITER-KEYS are more keys of writer.http
http_job() {
    local file=$1 keys=$2
    shift 2
    {
        echo "job: notify"
        echo "params:"
        echo "  port: {type: int, required: true, identifying: false}"
        echo "  tag: {type: string, default: ''}"
        echo "steps:"
        echo "  - name: send"
        echo "    chunk: 100"
        echo "    reader: {csv: {path: users.csv}}"
        echo "    writer:"
        echo "      http:"
        echo "        url: \"http://127.0.0.1:\${params.port}/users/\${item.id}/dormant\""
        echo "        headers: {Authorization: \"Bearer \${env.API_TOKEN}\"}"
        case $keys in
        *body:*) ;;
        *) echo "        body: '{\"id\": \${item.id|json}, \"email\": \${item.email|json}}'" ;;
        esac
        local ks k
        IFS=';' read -ra ks <<< "$keys"
        for k in "${ks[@]}"; do echo "        ${k# }"; done
        for extra in "$@"; do echo "    $extra"; done
    } > "$file"
}

# no_secret FILES...: the token is in none of them
no_secret() {
    for f in "$@"; do
        if grep -qF "$API_TOKEN" "$f"; then fail "the secret is in $f"; fi
    done
}

# ---------------------------------------------------------------- faults
users 1000
receiver faults --seed 7 --retry-after 1 --slow 2 --echo \
    --faults "429=0.03,503=0.03,502=0.02,504=0.02,500=0.01,400=0.01,slow=0.01,reset=0.02"
http_job faults.yaml "concurrency: 8; timeout: 1s" "skip: {limit: 1000}" \
    "retry: {limit: 8, backoff: {initial: 50ms, max: 200ms}}"
expect_exit 0 "$NS" run faults.yaml port="$port"
cp "$T/err" faults.err
stop_receiver faults
python3 - faults.jsonl rejects/notify-1-send.csv faults.err <<'PY' || exit 1
import csv, json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
rej = {int(r["line"]) - 1: r for r in csv.DictReader(open(sys.argv[2], newline=""))}
keys = {}
for r in recs:
    keys.setdefault(r["key"], []).append(r)
assert len(keys) == 1000, f"{len(keys)} distinct keys, not 1000"
prefix = None
delivered = 0
for key, rs in keys.items():
    m = re.fullmatch(r"ns-([0-9a-f]{32})-(\d+)", key)
    assert m, key
    prefix = prefix or m.group(1)
    assert m.group(1) == prefix, "one prefix for the step"
    seq = int(m.group(2))
    assert rs[0]["path"] == f"/users/{seq}/dormant", (rs[0]["path"], seq)
    assert json.loads(rs[0]["body"]) == {"id": str(seq), "email": f"u{seq}@example.org"}
    ok = [r for r in rs if 200 <= r["status"] < 300 and r["fault"] != "slow"]
    if seq in rej:
        assert not ok, f"item {seq} delivered and rejected"
        last = rs[-1]["status"]
        assert rej[seq]["code"] == f"HTTP_{last}", (seq, rej[seq]["code"], last)
        assert last in (400, 500), (seq, last)
        assert len(rej[seq]["message"]) <= 1100, len(rej[seq]["message"])
    else:
        assert ok, f"item {seq}: neither delivered nor rejected: {[r['status'] for r in rs]}"
        delivered += 1
        # nothing after the answer it took
        assert rs[-1] is ok[-1] or rs[-1]["fault"] == "slow", (seq, [r["status"] for r in rs])
err = open(sys.argv[3]).read()
retried = len(re.findall(r"retry \d+ of 8", err)) + sum(int(n) for n in re.findall(r"(\d+) more requests? of the chunk tried again", err))
faults = sum(1 for r in recs if r["fault"] in ("429", "503", "502", "504", "slow"))
assert retried >= faults, (retried, faults)
print(delivered, len(rej), retried)
open("faults.counts", "w").write(f"{delivered} {len(rej)} {retried}\n")
PY
read -r delivered rejected retried < faults.counts
assert_eq "$(show_eval 1 "d['steps'][0]['write_count']")" "$delivered" "written = delivered"
assert_eq "$(show_eval 1 "d['steps'][0]['write_skip_count']")" "$rejected" "write skips = rejected"
assert_eq "$(show_eval 1 "d['steps'][0]['retry_count']")" "$retried" "retry_count = retries logged"
"$NS" show 1 > show.out
no_secret faults.err show.out repo.db rejects/notify-1-send.csv
grep -q "Bearer \*\*\*" rejects/notify-1-send.csv || fail "the echoed header is not redacted in the rejects file"
python3 - faults.jsonl "$API_TOKEN" <<'PY' || exit 1
import json, sys
tok = sys.argv[2]
for l in open(sys.argv[1]):
    r = json.loads(l)
    assert r["headers"].get("Authorization") == "Bearer " + tok, r["headers"]
    rest = dict(r, headers={k: v for k, v in r["headers"].items() if k != "Authorization"})
    assert tok not in json.dumps(rest), "the secret is in another part of a request"
PY
echo "ok: faults: $delivered delivered, $rejected rejected with their status, $retried retries"

# a key in the url itself (?key=${env.X}): it reaches the request's query
# only, never a retry notice, a failure, the repository or the rejects
export API_KEY="key-$RANDOM-hush-$RANDOM"
users 200
receiver urlkey --seed 11 --retry-after 0 --faults "503=0.2,400=0.05"
http_job urlkey.yaml "concurrency: 4" "skip: {limit: 200}" "retry: {limit: 1, backoff: {initial: 10ms}}"
sed -i 's|/dormant"|/dormant?key=${env.API_KEY}"|' urlkey.yaml
# and a password written in the url itself (userinfo), shown as *** only
URL_PW="pw-$RANDOM-userinfo-$RANDOM"
sed -i "s|http://127.0.0.1:|http://ns:$URL_PW@127.0.0.1:|" urlkey.yaml
rc=0
"$NS" run urlkey.yaml port="$port" tag=urlkey > urlkey.out 2> urlkey.err || rc=$?
stop_receiver urlkey
grep -q 'dormant?key=${env.API_KEY}' urlkey.err || { cat urlkey.err >&2; fail "the url is not shown as its template"; }
"$NS" show "$("$NS" list --json --limit 1 | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")" > urlkey.show
for f in urlkey.err urlkey.out urlkey.show repo.db rejects/*; do
    if grep -qF "$API_KEY" "$f"; then fail "the url's key is in $f"; fi
    if grep -qF "$URL_PW" "$f"; then fail "the url's password is in $f"; fi
done
grep -qF "http://ns:***@127.0.0.1" urlkey.err || { cat urlkey.err >&2; fail "the url's password is not shown as ***"; }
python3 - urlkey.jsonl "$API_KEY" <<'PY' || exit 1
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
assert rs and all(r["args"].get("key") == sys.argv[2] for r in rs), "the key did not reach the request"
PY
echo "ok: a key in the url reaches the request only (exit $rc, with retries and rejects logged)"

# ------------------------------------------------------------------ rate
users 300
receiver rate
http_job rate.yaml "concurrency: 8; rate: 50/s"
expect_exit 0 "$NS" run rate.yaml port="$port" tag=rate
stop_receiver rate
python3 - rate.jsonl <<'PY' || exit 1
import json, sys
ts = sorted(json.loads(l)["t"] for l in open(sys.argv[1]))
assert len(ts) == 300, len(ts)
worst, j = 0, 0
for i, t in enumerate(ts):
    while ts[j] <= t - 1.0:
        j += 1
    worst = max(worst, i - j + 1)
assert worst <= 50, f"{worst} requests within one second, limit 50"
span = ts[-1] - ts[0]
assert span >= 299 / 50 * 0.98, f"300 requests in {span:.2f} s: faster than 50/s"
print(f"ok: rate: at most {worst} requests in any 1-second window ({span:.1f} s for 300)")
PY

# --------------------------------------------------- kill -9 and restart
users 3000
receiver kill
http_job kill.yaml "concurrency: 4; rate: 400/s"
"$NS" run kill.yaml port="$port" tag=kill > /dev/null 2>kill.err &
pid=$!
for _ in $(seq 400); do
    [ "$(wc -l < kill.jsonl)" -ge 1050 ] && break
    sleep 0.05
done
kill -9 $pid
wait $pid 2>/dev/null || true
sleep 0.5 # what the receiver had read before the kill is recorded
before=$(wc -l < kill.jsonl)
[ "$before" -lt 3000 ] || fail "the run ended before the kill"
expect_exit 0 "$NS" run kill.yaml port="$port" tag=kill
expect_err "restarts execution"
stop_receiver kill
python3 - kill.jsonl "$before" <<'PY' || exit 1
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
n = int(sys.argv[2])
first = [int(r["key"].rsplit("-", 1)[1]) for r in recs[:n]]
second = [int(r["key"].rsplit("-", 1)[1]) for r in recs[n:]]
assert sorted(set(first) | set(second)) == list(range(1, 3001)), "some item never sent"
again = sorted(set(first) & set(second))
assert len(second) == len(set(second)), "the restart sent an item twice"
assert again, "nothing sent again: the kill did not land inside a chunk"
if again:
    chunk = (again[0] - 1) // 100
    assert all((s - 1) // 100 == chunk for s in again), f"re-sent items span chunks: {again[:3]}..{again[-3:]}"
    assert second[0] == chunk * 100 + 1, "the restart did not begin with the chunk in flight"
print(f"ok: kill -9: {len(again)} items of the chunk in flight sent again, with the same keys")
PY

# -------------------------------------- stop while waiting on Retry-After
users 50
receiver wait --faults "503=1" --retry-after 30
http_job wait.yaml "concurrency: 2"
"$NS" run wait.yaml port="$port" tag=wait > /dev/null 2>wait.err &
pid=$!
for _ in $(seq 100); do grep -q "retry 1 of 3" wait.err && break; sleep 0.05; done
grep -q "the server asked to wait 30 s" wait.err || { cat wait.err; fail "Retry-After is not honoured"; }
t0=$(date +%s)
kill -TERM $pid
rc=0
wait $pid || rc=$?
stop_receiver wait
assert_eq "$rc" 3 "exit status of a run stopped during a Retry-After wait"
[ $(($(date +%s) - t0)) -lt 10 ] || fail "the stop took more than 10 s"
id=$("$NS" list --json | python3 -c "import json,sys; print(max(e['id'] for e in json.load(sys.stdin)))")
assert_eq "$(show_field "$id" "['status']")" STOPPED "status after SIGTERM during a wait"
echo "ok: SIGTERM during a Retry-After wait stops the run (exit 3)"

# ---------------------------------------- retries exhausted, then resumed
receiver down --faults "503=1" --retry-after 0
http_job down.yaml "concurrency: 2" "retry: {limit: 2, backoff: {initial: 10ms, max: 20ms}}"
expect_exit 1 "$NS" run down.yaml port="$port" tag=down
expect_err "gave up after 2 retries"
expect_err "HTTP 503 Service Unavailable"
stop_receiver down
receiver up
expect_exit 0 "$NS" run down.yaml port="$port" tag=down
expect_err "restarts execution"
stop_receiver up
assert_eq "$(python3 -c "import json; print(len({json.loads(l)['key'] for l in open('up.jsonl')}))")" 50 "items delivered once the server is back"
echo "ok: retries exhausted fail the step; the next run delivers"

# ------------------------------------------------ connection refused
http_job refused.yaml "concurrency: 1" "retry: {limit: 1, backoff: {initial: 10ms}}"
expect_exit 1 "$NS" run refused.yaml port=1 tag=refused
expect_err "connection reset"
expect_err "POST http://127.0.0.1:1/users/\${item.id}/dormant (line 2)"
echo "ok: a server that is not there fails the step, naming the request"

# ------------------------------------------------ hostile answers
users 20
receiver garbage --garbage 3000000 --faults "400=0.5" --seed 3
http_job garbage.yaml "concurrency: 4" "skip: {limit: 20}"
expect_exit 0 "$NS" run garbage.yaml port="$port" tag=garbage
stop_receiver garbage
python3 - rejects/notify-*-send.csv <<'PY' || exit 1
import csv, glob, sys
rows = [r for f in sys.argv[1:] for r in csv.DictReader(open(f, newline="", encoding="utf-8", errors="strict"))
        if r["code"] == "HTTP_400" and len(r["message"]) > 900]
assert rows, "no rejects with a long answer"
for r in rows:
    m = r["message"]
    assert m.startswith("HTTP 400 Bad Request: "), m[:40]
    assert len(m.encode()) <= 1100, len(m.encode())
    assert m.endswith("..."), m[-10:]
    assert not any(ord(c) < 32 for c in m), "control bytes in the message"
print(f"ok: hostile answers: 3 MB bodies read no further than 1 MiB, {len(rows)} excerpts cut to 1 KiB of clean text")
PY

# ------------------------------------------------ batches and bad values
python3 -c "
print('id,email,name')
for i in range(1, 26): print(f'{i},u{i}@example.org,User {i}')
print('26,,null email')
print('27,\"a\r\nX-Injected: yes\",bad header')" > users.csv
receiver batch
cat > batch.yaml <<EOF
job: batch
params:
  port: {type: int, required: true}
steps:
  - name: send
    chunk: 100
    skip: {limit: 5}
    reader: {csv: {path: users.csv}}
    writer:
      http:
        url: "http://127.0.0.1:\${params.port}/bulk"
        headers: {Authorization: "Bearer \${env.API_TOKEN}"}
        batch: 10
  - name: each
    chunk: 100
    skip: {limit: 5}
    reader: {csv: {path: users.csv}}
    writer:
      http:
        url: "http://127.0.0.1:\${params.port}/u/\${item.email}"
        method: PUT
        headers: {X-Email: "\${item.email}"}
EOF
expect_exit 0 "$NS" run batch.yaml port="$port"
stop_receiver batch
python3 - batch.jsonl <<'PY' || exit 1
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
bulk = [r for r in recs if r["path"] == "/bulk"]
each = [r for r in recs if r["path"] != "/bulk"]
assert [len(json.loads(r["body"])) for r in bulk] == [10, 10, 7], [len(json.loads(r["body"])) for r in bulk]
assert json.loads(bulk[2]["body"])[5] == {"id": "26", "email": None, "name": "null email"}
assert bulk[0]["key"].endswith("-1-10") and bulk[2]["key"].endswith("-21-27"), [r["key"] for r in bulk]
assert all(r["headers"].get("Content-Type") == "application/json" for r in bulk)
assert len(each) == 25 and all(r["method"] == "PUT" for r in each), len(each)
assert each[0]["path"] == "/u/u1%40example.org", each[0]["path"]
assert not any("X-Injected" in r["headers"] for r in recs), "a header was injected"
PY
got_rejects rejects/batch-*-each.csv > each.rej
assert_eq "$(cat each.rej)" "$(printf '27 23502\n28 22P02')" "rejects of values a request cannot carry"
echo "ok: batches of 10 as JSON arrays; a NULL in a url and a line break in a header are rejected"

# ------------------------------------------------ the job file
bad() {
    local want=$1
    shift
    local IFS=';'
    http_job bad.yaml "$*"
    expect_exit 2 "$NS" validate bad.yaml
    expect_err "$want"
}
bad "writer.http.rate: must be requests per second" "rate: fast"
bad "writer.http.success[0]: must be an HTTP status" "success: [abc]"
bad "writer.http.concurrency" "concurrency: 0"
bad "writer.http.timeout" "timeout: forever"
bad "writer.http.url: a batch is one request for several items" "batch: 10"
bad "unknown filter 'upper'" "method: PUT" "body: '\${item.id|upper}'"
http_job bad.yaml "method: GET; body: '{}'"
expect_exit 2 "$NS" validate bad.yaml
expect_err "a GET request carries no body"
http_job bad.yaml "body: '\${item.nope|json}'"
expect_exit 1 "$NS" run bad.yaml port=1 tag=nope
expect_err "the items have no field nope (they have: id, email, name)"
echo "ok: job file errors name the key"

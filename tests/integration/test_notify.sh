#!/usr/bin/env bash
# Notifications against a local receiver (ns-receiver on loopback): events
# are state changes (failed once per outage, still_failing every N,
# recovered, completed_with_skips), each delivered once, in order; Slack
# messages within Slack's limits; 429 with Retry-After, 500 and slow
# answers retried, then recorded on the execution and shown; one message a
# second per target; a command gets the event on stdin; no secret in any
# request body, log or the repository; a missed tick from the scheduler.
source "$(dirname "$0")/lib.sh"
: "${NS_RECEIVER:?set NS_RECEIVER to the ns-receiver binary}"
receiver() { # NAME ARGS...: a receiver recording into $T/NAME.jsonl; its port in $PORT
    local name=$1
    shift
    rm -f "$T/$name.port"
    "$NS_RECEIVER" --port-file "$T/$name.port" --record "$T/$name.jsonl" "$@" > /dev/null 2>&1 &
    for _ in $(seq 100); do [ -s "$T/$name.port" ] && break; sleep 0.05; done
    PORT=$(cat "$T/$name.port") || fail "the receiver did not start"
}
export SLACK_SECRET=sl4ck-s3cret-path TOKEN=t0ken-v4lue-xyz
receiver ok
OK=$PORT
cat > notify.sh <<'EOF'
#!/bin/sh
cat >> "$1"
echo >> "$1"
EOF
chmod +x notify.sh
# A job that fails while $T/fail exists, rejects a record while $T/reject does.
cat > job.yaml <<EOF
job: notified
params:
  run: {type: int, default: 0}
connections:
  db: "sqlite:$T/t.db"
steps:
  - name: load
    reader: {csv: {path: "$T/in.csv"}}
    writer: {table: {connection: db, name: t}}
    skip: {limit: 10}
    rejects: "$T/rejects-\${execution.id}.csv"
  - name: check
    assert: {connection: db, sql: "SELECT 'failing on purpose' FROM t WHERE id = 999"}
notify:
  - slack: {webhook: "http://127.0.0.1:$OK/services/T0/B0/\${env.SLACK_SECRET}"}
    on: [failed, recovered, completed_with_skips, still_failing]
    every: 2
  - webhook:
      url: "http://127.0.0.1:$OK/hook"
      headers: {Authorization: "Bearer \${env.TOKEN}"}
    on: [failed, recovered, completed, started]
  - command: ["$T/notify.sh", "$T/command.jsonl"]
    on: [failed, recovered]
EOF
sql t.db "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"
good() { printf 'id,name\n1,a\n2,b\n' > in.csv; sql t.db "DELETE FROM t"; }
bad() { printf 'id,name\n1,a\n999,b\n' > in.csv; sql t.db "DELETE FROM t"; }
run() { "$NS" run job.yaml "run=$1" >> "$T/run.out" 2>> "$T/run.err" || true; }
bad; run 1            # failed
bad; run 2            # still failing (2nd in a row): not to slack (every 2: the 3rd)
bad; run 3            # still failing, 3rd: to slack
good; run 4           # recovered
good; run 5           # completed (webhook only)
printf 'id,name\n1,a\n2,\n' > in.csv; sql t.db "DELETE FROM t"; run 6   # completed_with_skips
python3 - "$T/ok.jsonl" "$T/command.jsonl" <<'PY' || fail "events"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
slack = [json.loads(r["body"]) for r in reqs if r["path"].startswith("/services/")]
hook = [json.loads(r["body"]) for r in reqs if r["path"] == "/hook"]
cmd = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
assert [r["status"] for r in reqs] == [200] * len(reqs)
# Slack: failed, still_failing (the 3rd failure), recovered, completed_with_skips
heads = [m["blocks"][0]["text"]["text"] for m in slack]
assert [h.split(": ")[-1] for h in heads] == ["failed", "still_failing", "recovered", "completed_with_skips"], heads
hook_events = [(m["event"], m["params"]["run"]) for m in hook]
assert hook_events == [("started", 1), ("failed", 1), ("started", 2), ("started", 3), ("started", 4),
                       ("completed", 4), ("recovered", 4), ("started", 5), ("completed", 5), ("started", 6),
                       ("completed", 6)], hook_events
assert [(m["event"], m["params"]["run"]) for m in cmd] == [("failed", 1), ("recovered", 4)], cmd
f = [m for m in hook if m["event"] == "failed"][0]
assert f["status"] == "FAILED" and "failing on purpose" in f["exit_message"], f
assert f["show"] == "nightshift show %d" % f["execution_id"] and f["host"]
assert [s["name"] for s in f["steps"]] == ["load", "check"], f["steps"]
sk = [m for m in slack if "completed_with_skips" in m["blocks"][0]["text"]["text"]][0]
txt = json.dumps(sk)
assert "First rejects" in txt and "line 3" in txt and "23502" in txt, txt
still = slack[1]
assert "Failures in a row* 3" in json.dumps(still), still
for m in slack:  # Slack's limits
    assert m["text"] and len(m["blocks"]) <= 50
    assert len(m["blocks"][0]["text"]["text"]) <= 150
    for b in m["blocks"]:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
    assert len(json.dumps(m["blocks"])) <= 13000
auth = {r["headers"].get("Authorization") for r in reqs if r["path"] == "/hook"}
assert auth == {"Bearer t0ken-v4lue-xyz"}, auth
PY
# No secret anywhere but in the requests' path and header.
for f in run.out run.err repo.db command.jsonl; do
    if grep -aq -e sl4ck-s3cret -e t0ken-v4lue "$f"; then fail "a secret is in $f"; fi
done
python3 - "$T/ok.jsonl" <<'PY' || fail "a secret in a request body"
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    assert "sl4ck" not in r["body"] and "t0ken" not in r["body"], r["body"][:200]
PY

# --- delivery: 429 with Retry-After, then delivered; the receiver saw the wait.
receiver r429 --first 2=429 --retry-after 2
sed "s|127.0.0.1:$OK/hook|127.0.0.1:$PORT/hook|; /slack:/,/every:/d; /command:/,/on: \[failed, recovered\]/d" job.yaml > j429.yaml
bad; "$NS" run j429.yaml run=10 > /dev/null 2>&1 || true
python3 - "$T/r429.jsonl" <<'PY' || fail "429 and Retry-After"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
st = [r["status"] for r in reqs]
assert st == [429, 429, 200, 200], st   # started (429, 429, 200), failed (200)
assert reqs[1]["t"] - reqs[0]["t"] >= 1.9 and reqs[2]["t"] - reqs[1]["t"] >= 1.9, [r["t"] for r in reqs]
PY
# --- 500 every time: retried, then recorded on the execution and shown; the run's result unchanged.
receiver r500 --faults 500=1 --echo
sed "s|127.0.0.1:$OK/hook|127.0.0.1:$PORT/hook|; /slack:/,/every:/d; /command:/,/on: \[failed, recovered\]/d; s/on: \[failed, recovered, completed, started\]/on: [completed]/" job.yaml > j500.yaml
good
expect_exit 0 "$NS" run j500.yaml run=11
expect_err "notify[0] (webhook): completed not delivered: HTTP 500"
expect_err "(after 4 attempts)"
id=$(sql repo.db "SELECT max(id) FROM ns_job_execution")
"$NS" show "$id" > show.out
grep -q "notify      NOT DELIVERED: notify\[0\] (webhook): completed not delivered: HTTP 500" show.out || { cat show.out; fail "show lacks the undelivered notification"; }
[ "$(show_eval "$id" 'len(d["notify_errors"])')" = 1 ] || fail "show --json notify_errors"
[ "$(show_eval "$id" 'd["status"]')" = COMPLETED ] || fail "a notification changed the result"
"$NS" list > list.out
grep -q "COMPLETED!" list.out || { cat list.out; fail "list does not flag the undelivered notification"; }
assert_eq "$(grep -c . r500.jsonl)" 4 "4 attempts"
grep -q t0ken-v4lue repo.db && fail "the echoed header reached the repository"
grep -q t0ken-v4lue "$T/err" && fail "the echoed header reached stderr"
# --- slow past the timeout: retried, recorded.
receiver slow --faults slow=1 --slow 3
sed "s|127.0.0.1:$OK/hook|127.0.0.1:$PORT/hook|; /slack:/,/every:/d; /command:/,/on: \[failed, recovered\]/d; s/on: \[failed, recovered, completed, started\]/on: [completed]\n    timeout: 500ms/" job.yaml > jslow.yaml
good
t0=$(date +%s)
expect_exit 0 "$NS" run jslow.yaml run=12
expect_err "notify[0] (webhook): completed not delivered: Timeout was reached (after 4 attempts)"
[ $(($(date +%s) - t0)) -lt 30 ] || fail "a slow receiver held the run too long"
# --- a variable not set: said and recorded, the run is not refused.
good
env -u TOKEN "$NS" run jslow.yaml run=13 > /dev/null 2> err13 || fail "an unset notify variable failed the run"
grep -q "notify\[0\] (webhook): completed not delivered: notify\[0\]: environment variable TOKEN is not set" err13 || { cat err13; fail "unset variable"; }
# --- a hostile answer (3 MB of every byte value, with 500): the recorded
# line is short, valid UTF-8 text; show --json still parses and carries it.
receiver garb --faults 500=1 --garbage 3000000
sed "s|127.0.0.1:$OK/hook|127.0.0.1:$PORT/hook|; /slack:/,/every:/d; /command:/,/on: \[failed, recovered\]/d; s/on: \[failed, recovered, completed, started\]/on: [completed]/" job.yaml > jgarb.yaml
good
expect_exit 0 "$NS" run jgarb.yaml run=14
id=$(sql repo.db "SELECT max(id) FROM ns_job_execution")
"$NS" show "$id" --json | python3 -c "
import json, sys
e = json.load(sys.stdin)['notify_errors']
assert len(e) == 1 and len(e[0]) < 700 and 'HTTP 500' in e[0], e
assert not any(ord(c) < 32 for c in e[0]), e
" || fail "a hostile answer broke the recorded notification error"
# --- a password written in the webhook's URL (userinfo) is a secret too.
# The receiver echoes what it was sent, its Authorization: Basic header (the
# password in base64) included.
receiver pw --faults 500=1 --echo
sed "s|http://127.0.0.1:$OK/hook|http://ns:pw-literal-9q@127.0.0.1:$PORT/hook|; /slack:/,/every:/d; /command:/,/on: \[failed, recovered\]/d; /headers: {Authorization/d; s/on: \[failed, recovered, completed, started\]/on: [completed]/" job.yaml > jpw.yaml
good
expect_exit 0 "$NS" run jpw.yaml run=15
grep -q "Authorization: Basic" "$T/err" || fail "the receiver did not echo the Basic header: $(cat "$T/err")"
grep -q "pw-literal-9q" "$T/err" "$T/out" repo.db && fail "the URL's password reached a message or the repository"
grep -q "bnM6cHctbGl0ZXJhbC05cQ\|cHctbGl0ZXJhbC05" "$T/err" "$T/out" repo.db && fail "the URL's password reached a message in base64"
[ "$(grep -c . pw.jsonl)" = 4 ] || fail "the webhook with a password in its URL was not tried 4 times"

# notify_job NAME: a job of one trivial SQL step, its notify: entries read
# from stdin (with "params:" first when the job needs one), into NAME.yaml.
notify_job() {
    local extra
    extra=$(cat)
    {
        echo "job: $1"
        case $extra in params:*) printf '%s\n' "${extra%%notify:*}" ;; esac
        echo "connections:"
        echo "  db: \"sqlite:$T/h.db\""
        echo "steps:"
        echo "  - name: s"
        echo "    sql: {connection: db, script: \"SELECT 1\"}"
        echo "notify:${extra#*notify:}"
    } > "$1.yaml"
}

# --- a command that hangs is killed at its timeout; one that fails is said.
notify_job hang <<EOF
notify:
  - command: ["sh", "-c", "sleep 1000 & echo \$! >> $T/bg.pids; echo \$\$ >> $T/fg.pids; sleep 1000"]
    on: [completed]
    timeout: 300ms
  - command: ["sh", "-c", "cat > /dev/null; exit 3"]
    on: [completed]
  - command: ["no-such-program-ns21"]
    on: [completed]
  - command: ["sh", "-c", "ls -l /proc/\$\$/fd > $T/fds"]
    on: [completed]
EOF
t0=$(date +%s)
expect_exit 0 "$NS" run hang.yaml
[ $(($(date +%s) - t0)) -lt 40 ] || fail "a hanging command held the run"
expect_err "notify[0] (command): completed not delivered: sh did not finish within 0.3 s (killed) (after 4 attempts)"
expect_err "notify[1] (command): completed not delivered: sh exited 3 (after 4 attempts)"
expect_err "notify[2] (command): completed not delivered: no-such-program-ns21: command not found (after 1 attempt)"
# The command and what it started in the background, each attempt's, are
# gone: the group was killed at the timeout (the pids it wrote, not a
# pattern that could match another process on the host).
assert_eq "$(grep -c . bg.pids)" 4 "background children recorded (one per attempt)"
for p in $(cat bg.pids fg.pids); do
    if kill -0 "$p" 2>/dev/null && grep -q sleep "/proc/$p/cmdline" 2>/dev/null; then
        fail "process $p of a notify command outlived its timeout"
    fi
done
# Nothing of ours leaks into the command but its stdin, stdout and stderr:
# any other descriptor it has is one this shell passed down too (ctest's),
# or the shell's own copy for its redirection (10 and up).
ls -l /proc/$$/fd | awk '{print $NF}' > ours
awk '$9 ~ /^[0-9]+$/ && $9 > 2 && $9 < 10 {print $9, $NF}' fds | while read -r fd what; do
    grep -qxF -- "$what" ours || fail "a notify command inherited descriptor $fd ($what): $(cat fds)"
done
grep -q ' 0 -> pipe:' fds || fail "the event did not come on a pipe: $(cat fds)"

# --- a command that never reads an event larger than the pipe: the write
# counts against the timeout (it used to block for ever).
python3 -c "print('x' * 120000)" > big.txt # the event: > 64 KiB, a pipe's capacity
notify_job deaf <<EOF
params:
  note: {type: string, identifying: false}
notify:
  - command: ["sh", "-c", "echo \$\$ >> $T/deaf.pids; exec sleep 1000"]
    on: [completed]
    timeout: 500ms
EOF
t0=$(date +%s)
rc=0
timeout 60 "$NS" run deaf.yaml "note=$(cat big.txt)" > "$T/out" 2> "$T/err" || rc=$?
[ "$rc" = 0 ] || { cat "$T/err"; fail "the run with a deaf notify command exited $rc"; }
[ $(($(date +%s) - t0)) -lt 20 ] || fail "a command that does not read held the run"
expect_err "notify[0] (command): completed not delivered: sh did not finish within 0.5 s (killed) (after 4 attempts)"
for p in $(cat deaf.pids); do
    if kill -0 "$p" 2>/dev/null && grep -q sleep "/proc/$p/cmdline" 2>/dev/null; then
        fail "the deaf command $p outlived its timeout"
    fi
done

# --- a header longer than 4 KiB reaches the receiver whole (it was cut).
receiver longhdr
long_value=$(python3 -c "print('v' * 6000)")
notify_job longhdr <<EOF
notify:
  - webhook: {url: "http://127.0.0.1:$PORT/hook", headers: {X-Long: "$long_value"}}
    on: [completed]
EOF
expect_exit 0 "$NS" run longhdr.yaml
python3 - "$T/longhdr.jsonl" <<'PY' || fail "a long header was cut"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
assert len(reqs) == 1, len(reqs)
assert reqs[0]["headers"].get("X-Long") == "v" * 6000, len(reqs[0]["headers"].get("X-Long", ""))
PY

# --- a header whose ${env.X} value holds a line break is not sent (it would
# add a header of the value's choosing).
receiver crlf
notify_job crlf <<EOF
notify:
  - webhook: {url: "http://127.0.0.1:$PORT/hook", headers: {X-T: "\${env.EVIL}"}}
    on: [completed]
EOF
EVIL=$'abc\r\nX-Injected: 1' expect_exit 0 "$NS" run crlf.yaml
expect_err "notify[0] (webhook): completed not delivered: header X-T: its value holds a line break"
if [ -s crlf.jsonl ] && grep -q "X-Injected" crlf.jsonl; then fail "a header was injected"; fi

# --- a Slack receiver that answers 500 with the path it was sent: the
# webhook's key is in that path; it reaches no message, show or repository.
receiver echo500 --faults 500=1 --echo
notify_job slackkey <<EOF
notify:
  - slack: {webhook: "http://127.0.0.1:$PORT/services/T0SLACKTEAM9/B0SLACKBOT8/sLaCkKeY0123456789abcdef"}
    on: [completed]
EOF
expect_exit 0 "$NS" run slackkey.yaml
expect_err "notify[0] (slack): completed not delivered: HTTP 500: no hook at ***"
id=$(sql repo.db "SELECT max(id) FROM ns_job_execution")
"$NS" show "$id" --json > slackkey.json
"$NS" show "$id" > slackkey.show
for s in sLaCkKeY0123456789abcdef T0SLACKTEAM9 B0SLACKBOT8; do
    for f in "$T/err" "$T/out" slackkey.json slackkey.show repo.db; do
        if grep -aq "$s" "$f"; then fail "the Slack webhook's $s reached $f"; fi
    done
done

# --- one message a second per target, across processes.
receiver rate
cat > rate.yaml <<EOF
job: rated
params:
  n: {type: int, default: 0}
connections:
  db: "sqlite:$T/rate.db"
steps:
  - name: s
    sql: {connection: db, script: "SELECT 1"}
notify:
  - webhook: {url: "http://127.0.0.1:$PORT/same"}
    on: [started, completed]
EOF
rpids=()
for n in 1 2 3; do "$NS" run rate.yaml n=$n > /dev/null 2>&1 & rpids+=($!); done
wait "${rpids[@]}"
python3 - "$T/rate.jsonl" <<'PY' || fail "more than one message a second to one target"
import json, sys
t = sorted(json.loads(l)["t"] for l in open(sys.argv[1]))
assert len(t) == 6, t
gaps = [b - a for a, b in zip(t, t[1:])]
assert min(gaps) >= 0.95, gaps
PY
# --- a long error: cut to Slack's limits with a note.
receiver big
python3 - <<PY > big.yaml
print("""job: big
params:
  p: {type: string, default: "%s"}
connections:
  db: "sqlite:$T/big.db"
steps:
""" % ("x" * 5000))
for i in range(120):
    print(f"  - name: step{i}\n    sql: {{connection: db, script: \"SELECT 1\"}}")
print("""  - name: boom
    sql: {connection: db, script: "SELECT * FROM %s"}
notify:
  - slack: {webhook: "http://127.0.0.1:$PORT/services/x"}""" % ("no_such_table_" + "y" * 900))
PY
"$NS" run big.yaml > /dev/null 2>&1 || true
python3 - "$T/big.jsonl" <<'PY' || fail "Slack's limits"
import json, sys
m = json.loads(json.loads(open(sys.argv[1]).readline())["body"])
assert len(m["blocks"]) <= 50
for b in m["blocks"]:
    if b["type"] == "section":
        assert len(b["text"]["text"]) <= 3000, len(b["text"]["text"])
assert len(json.dumps(m["blocks"])) <= 13000
assert "more steps (nightshift show" in json.dumps(m), "no note on the steps cut"
PY
# --- a missed tick, from the scheduler.
receiver missed
cat > missed.yaml <<EOF
job: missed
connections:
  db: "sqlite:$T/m.db"
steps:
  - name: s
    sql: {connection: db, script: "SELECT 1"}
schedule: {cron: "0 * * * *", misfire: skip}
notify:
  - webhook: {url: "http://127.0.0.1:$PORT/missed"}
    on: [missed]
EOF
sql repo.db "INSERT INTO ns_tick (job_name, at, local_time, state, claimed_by, claimed_at) VALUES ('missed', $(date -u -d 2024-03-09T00:00:00Z +%s), '2024-03-09T00:00:00', 'STARTED', 'test', 0)"
NIGHTSHIFT_TEST_CLOCK="$(date -u -d 2024-03-09T05:30:00Z +%s) 1 $(date +%s.%N)" "$NS" scheduler missed.yaml > sched.log 2>&1 &
SP=$!
for _ in $(seq 100); do [ -s missed.jsonl ] && break; sleep 0.1; done
kill -TERM $SP; wait $SP || true
python3 - "$T/missed.jsonl" <<'PY' || { cat sched.log; fail "the missed event"; }
import json, sys
reqs = [json.loads(json.loads(l)["body"]) for l in open(sys.argv[1])]
assert len(reqs) == 1 and reqs[0]["event"] == "missed", reqs
assert reqs[0]["exit_message"].startswith("4 ticks missed, 2024-03-09 01:00:00 UTC to 2024-03-09 04:00:00 UTC"), reqs[0]
PY
echo "notify: ok"

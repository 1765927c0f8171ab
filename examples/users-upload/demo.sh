#!/usr/bin/env bash
# make demo: load users.csv into a fresh database with nightshift (SQLite in
# out/ unless TARGET_URL says otherwise), check it, publish it; show the
# summary, the recorded run and where the rejected rows went; then show that a
# second run of the same month is refused.
source "$(dirname "$0")/../common.sh"
case $TARGET_URL in sqlite:*) rm -f "${TARGET_URL#sqlite:}" ;; esac
rm -rf out/rejects out/nightshift.db out/slack.jsonl out/slack.port
# A stand-in for Slack: ns-receiver on loopback records what it is sent.
receiver=$(dirname "$NS")/ns-receiver
[ -x "$receiver" ] || { echo "demo.sh: $receiver not found (make builds it)" >&2; exit 1; }
"$receiver" --port-file out/slack.port --record out/slack.jsonl 2> /dev/null &
receiver_pid=$!
trap 'kill $receiver_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s out/slack.port ] && break; sleep 0.05; done
export SLACK_WEBHOOK="http://127.0.0.1:$(cat out/slack.port)/services/T000/B000/demo"

echo "== nightshift run job.yaml file=users.csv month=2026-11-01"
"$NS" run job.yaml file=users.csv month=2026-11-01 || true
echo
echo "== nightshift list"
"$NS" list
echo
echo "== nightshift show 1"
"$NS" show 1
echo
rejects=$(ls out/rejects/*.csv)
echo "== the first rejects of $(( $(wc -l < "$rejects") - 1 )) (file: $rejects)"
head -8 "$rejects"
echo
echo "== rows in users: $(q 'SELECT count(*) FROM users')"
echo "== published: $(q 'SELECT month, users FROM publications')"
echo
echo "== the same month again is refused (exit 4):"
set +e
"$NS" run job.yaml file=users.csv month=2026-11-01
echo "exit status $?"
set -e
echo
echo "== the Slack message the run sent (ns-receiver recorded it in out/slack.jsonl):"
python3 - out/slack.jsonl <<'PY' || echo "(none received)"
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(json.loads(line)["body"])
    print(m["text"])
    for b in m["blocks"]:
        t = b.get("text") or (b.get("elements") or [{}])[0]
        print("  |", (t.get("text") or "").replace("\n", "\n  | "))
PY

#!/usr/bin/env bash
# Notifications with a PostgreSQL repository: an undelivered notification is
# recorded on the execution and shown; three concurrent runs' messages to one
# webhook are spaced a second apart by the repository's slots.
source "$(dirname "$0")/lib.sh"
: "${NS_RECEIVER:?set NS_RECEIVER to the ns-receiver binary}"
REPO=$(pg_db ns_notify)
export NIGHTSHIFT_REPOSITORY=$REPO
receiver() { # NAME ARGS...
    local name=$1
    shift
    "$NS_RECEIVER" --port-file "$T/$name.port" --record "$T/$name.jsonl" "$@" > /dev/null 2>&1 &
    for _ in $(seq 100); do [ -s "$T/$name.port" ] && break; sleep 0.05; done
    PORT=$(cat "$T/$name.port") || fail "the receiver did not start"
}
job() { # FILE PORT PATH EVENTS
    cat > "$1" <<EOF
job: pgnote
params:
  n: {type: int, default: 0}
connections:
  db: "sqlite:$T/x.db"
steps:
  - name: s
    sql: {connection: db, script: "SELECT 1"}
notify:
  - webhook: {url: "http://127.0.0.1:$2/$3", headers: {Authorization: "Bearer \${env.TOKEN}"}}
    on: $4
EOF
}
export TOKEN=pg-t0ken-secret
receiver bad --faults 500=1 --echo
job bad.yaml "$PORT" bad "[completed]"
expect_exit 0 "$NS" run bad.yaml n=1
expect_err "notify[0] (webhook): completed not delivered: HTTP 500"
id=$(psql "$REPO" -qAtX -c "SELECT max(id) FROM nightshift.ns_job_execution")
[ "$(show_eval "$id" 'd["notify_errors"][0].split(":")[0]')" = "notify[0] (webhook)" ] || fail "not recorded"
"$NS" show "$id" | grep -q "notify      NOT DELIVERED" || fail "show"
"$NS" list | grep -q "COMPLETED!" || fail "list"
psql "$REPO" -qAtX -c "SELECT notify_errors FROM nightshift.ns_job_execution" | grep -q pg-t0ken && fail "a secret in the repository"
receiver rate
job rate.yaml "$PORT" same "[started, completed]"
pids=()
for n in 2 3 4; do "$NS" run rate.yaml n=$n > /dev/null 2>&1 & pids+=($!); done
wait "${pids[@]}"
python3 - "$T/rate.jsonl" <<'PY' || fail "more than one message a second to one target"
import json, sys
t = sorted(json.loads(l)["t"] for l in open(sys.argv[1]))
assert len(t) == 6, t
gaps = [b - a for a, b in zip(t, t[1:])]
assert min(gaps) >= 0.95, gaps
PY
assert_eq "$(psql "$REPO" -qAtX -c "SELECT count(*) FROM nightshift.ns_notify_slot")" 2 "a slot per target, by hash"
psql "$REPO" -qAtX -c "SELECT target FROM nightshift.ns_notify_slot" | grep -q 127.0.0.1 && fail "a URL in the slots"
echo "notify on PostgreSQL: ok"

#!/usr/bin/env bash
# The dormant-users example: seed 12,000 users, switch those inactive for a
# year to dormant in chunks, tell the third party of each (ns-receiver, a
# local stand-in that records what it gets and fails now and then on
# purpose), and show nothing was skipped or sent twice.
source "$(dirname "$0")/../common.sh"
receiver=$(dirname "$NS")/ns-receiver
[ -x "$receiver" ] || { echo "run.sh: $receiver not found (make builds it)" >&2; exit 1; }
rm -f out/received.jsonl out/receiver.port
# 0.3% 503 and 0.3% 429 (Retry-After: 1 s), 0.2% dropped connections: the
# writer retries each on its own; --dedupe answers 409 to a key it has done.
"$receiver" --port-file out/receiver.port --record out/received.jsonl --dedupe --seed 4 \
    --faults "503=0.003,429=0.003,reset=0.002" --retry-after 1 2>out/receiver.log &
receiver_pid=$!
trap 'kill $receiver_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s out/receiver.port ] && break; sleep 0.05; done
api=http://127.0.0.1:$(cat out/receiver.port)
export API_TOKEN=${API_TOKEN:-example-token-not-a-real-one}
received() { python3 -c "
import json, sys
rs = [json.loads(l) for l in open('out/received.jsonl')]
done = {r['key'] for r in rs if r['status'] in (200, 409)}
print(f'{len(rs)} requests, {len(done)} users, {sum(r[\"status\"] == 409 for r in rs)} repeats answered 409')"; }

say "seed: 12,000 users"
run run seed.yaml
say "inactive before 2025-11-21, still active: $(q "SELECT count(*) FROM users WHERE status = 'active' AND last_login < '2025-11-21'")"
say "nightshift run job.yaml day=2026-11-21 cutoff=2025-11-21 api=$api"
run run job.yaml day=2026-11-21 cutoff=2025-11-21 api="$api"
say "now: $(q "SELECT count(*) FROM users WHERE status = 'dormant'") dormant, $(q "SELECT count(*) FROM users WHERE status = 'active' AND last_login < '2025-11-21'") inactive still active"
say "the third party got: $(received)"
say "the next night switches no one new, and calls no one"
run run job.yaml day=2026-11-22 cutoff=2025-11-22 api="$api"
say "the third party got: $(received)"

#!/usr/bin/env bash
# The point-settlement example: seed the data, settle two days, show that a
# day settled twice is refused, and what was recorded.
source "$(dirname "$0")/../common.sh"
say "seed: point events and coupons"
run run seed.yaml
say "settle 2026-11-20"
run run job.yaml day=2026-11-20
say "settle 2026-11-21"
run run job.yaml day=2026-11-21
say "settle 2026-11-20 again: refused (exit 4)"
run run job.yaml day=2026-11-20
say "settlement rows per day"
q "SELECT day, count(*), sum(earned), sum(used), sum(expired) FROM settlement GROUP BY day ORDER BY day"
say "coupons: $(q "SELECT count(*) FROM coupons WHERE status = 'exchanged'") exchanged for new ones"
run list

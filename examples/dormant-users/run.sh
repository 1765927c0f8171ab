#!/usr/bin/env bash
# The dormant-users example: seed 12,000 users, switch those inactive for a
# year to dormant in chunks, and show nothing was skipped.
source "$(dirname "$0")/../common.sh"
say "seed: 12,000 users"
run run seed.yaml
say "inactive before 2025-11-21, still active: $(q "SELECT count(*) FROM users WHERE status = 'active' AND last_login < '2025-11-21'")"
say "nightshift run job.yaml day=2026-11-21 cutoff=2025-11-21"
run run job.yaml day=2026-11-21 cutoff=2025-11-21
say "now: $(q "SELECT count(*) FROM users WHERE status = 'dormant'") dormant, $(q "SELECT count(*) FROM users WHERE status = 'active' AND last_login < '2025-11-21'") inactive still active"
say "the next night switches no one new"
run run job.yaml day=2026-11-22 cutoff=2025-11-22

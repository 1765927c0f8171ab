#!/usr/bin/env bash
# kill -9 at 25 random moments with the job repository on PostgreSQL, then with
# the target on PostgreSQL (checkpoint row in its transaction), then with both
# in one PostgreSQL database (one transaction): every row and every reject
# exactly once (see test_kill9.sh).
KILL9_VARIANTS="pg-repository pg-target pg-shared pg-foreign" exec bash "$(dirname "$0")/test_kill9.sh"

#!/usr/bin/env bash
# test_flow.sh with its target on PostgreSQL.
FLOW_PG=1 exec bash "$(dirname "$0")/test_flow.sh"

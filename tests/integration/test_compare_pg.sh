#!/usr/bin/env bash
# test_compare.sh with the right side and the table output in PostgreSQL.
COMPARE_PG=1 exec bash "$(dirname "$0")/test_compare.sh"

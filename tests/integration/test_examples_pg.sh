#!/usr/bin/env bash
# test_examples.sh with every example working on PostgreSQL.
EXAMPLES_PG=1 exec bash "$(dirname "$0")/test_examples.sh"

#!/usr/bin/env bash
# The database -> file export of test_export_file.sh from a PostgreSQL source,
# killed at random moments with the job repository on PostgreSQL (where an
# at-least-once writer's checkpoint is kept): the output byte-identical to an
# uninterrupted run.
EXPORT_PG=1 exec bash "$(dirname "$0")/test_export_file.sh"

#!/usr/bin/env bash
# nightshift recover with the repository on PostgreSQL (see test_recover.sh).
RECOVER_REPO=pg exec bash "$(dirname "$0")/test_recover.sh"

#!/usr/bin/env bash
# nightshift purge with the repository on PostgreSQL (see test_purge.sh).
PURGE_REPO=pg exec bash "$(dirname "$0")/test_purge.sh"

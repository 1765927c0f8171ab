#!/usr/bin/env bash
# The users-upload example: what `make demo` shows (demo.sh): a fresh
# database, the run, list, show, the first rejects, what was published, and
# the refused second run.
exec "$(dirname "$0")/demo.sh" "$@"

#!/usr/bin/env bash
# kill -9 at 25 random moments with the target on MariaDB (the checkpoint row
# in the chunk's InnoDB transaction; every bad row isolated from a LOAD
# DATA's warnings): every row and every reject exactly once (see test_kill9.sh).
KILL9_VARIANTS="mysql-target" exec bash "$(dirname "$0")/test_kill9.sh"

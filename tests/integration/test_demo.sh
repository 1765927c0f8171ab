#!/usr/bin/env bash
# `make demo` runs the bundled example end to end: the summary, the recorded
# run, the rejects file and the refusal of a second run.
source "$(dirname "$0")/lib.sh"
cp -r "$NS_SRC/examples" ex
rm -rf ex/*/out
ex/users-upload/demo.sh "$NS" > demo.out 2>&1 || { cat demo.out >&2; fail "demo.sh failed"; }
grep -q "execution 1: COMPLETED" demo.out || { cat demo.out >&2; fail "demo did not complete"; }
grep -q "rows in users: 3839" demo.out || { cat demo.out >&2; fail "demo loaded the wrong rows"; }
grep -q "exit status 4" demo.out || { cat demo.out >&2; fail "second run was not refused"; }
grep -q "published: 2026-11-01|3839" demo.out || { cat demo.out >&2; fail "the month was not published"; }
echo "demo: ok"

#!/usr/bin/env bash
# A full disk (docs/operations.md, "A full disk"): the rejects file, then an
# SQLite target, on a small tmpfs that fills mid-load. The step fails
# cleanly, naming the path and the OS error; what committed stays; once
# there is room again, the next run resumes and every row and reject is
# there exactly once. Needs root (mount), as make test runs on CI.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" == 0 ] || fail "this test mounts a tmpfs: run it as root"
mkdir -p full
mount -t tmpfs -o size=256k tmpfs full || fail "cannot mount a tmpfs"
trap 'umount "$T/full" 2>/dev/null || true; cleanup' EXIT
# 20,000 rows, every 10th bad: 2,000 rejects, far more than 256 KiB of them
python3 - > in.csv <<'PY'
print("id,v")
for i in range(1, 20001):
    print(f"{i},{'x' if i % 10 == 0 else i}")
PY
export TARGET_URL="sqlite:$T/target.db"
sqlite3 "$T/target.db" "CREATE TABLE k (id INTEGER NOT NULL, v INTEGER);"
load_job job.yaml full k "skip: {limit: 100000}" "rejects: \"$T/full/rejects.csv\""
head -c 200k /dev/zero > full/ballast
expect_exit 1 "$NS" run job.yaml file=in.csv
expect_err "rejects file $T/full/rejects.csv: No space left on device"
committed=$(sqlite3 "$T/target.db" "SELECT count(*) FROM k")
[ "$committed" -lt 18000 ] || fail "the load went on past the full disk ($committed rows)"
assert_eq "$(show_field 1 "['status']")" FAILED "status on a full disk"
assert_eq "$(show_eval 1 "d['steps'][0]['write_count']")" "$committed" "the repository's count of what committed"
rm full/ballast
expect_exit 0 "$NS" run job.yaml file=in.csv
expect_err "restarts execution 1"
assert_eq "$(sqlite3 "$T/target.db" "SELECT count(*), count(DISTINCT id) FROM k")" "18000|18000" "rows after the disk had room again"
python3 - full/rejects.csv <<'PY' || exit 1
import csv, sys
lines = [int(r["line"]) for r in csv.DictReader(open(sys.argv[1], newline=""))]
want = [i + 1 for i in range(10, 20001, 10)]
assert lines == want, (len(lines), len(want), lines[:5])
PY
echo "ok: a full disk under the rejects file"

# The SQLite target itself on the full disk
rm -f full/*
export TARGET_URL="sqlite:$T/full/target.db"
sqlite3 "$T/full/target.db" "CREATE TABLE k (id INTEGER NOT NULL, v INTEGER);"
load_job target.yaml full-target k "skip: {limit: 100000}" "rejects: \"$T/rejects-t.csv\""
# named in the job file (a URL from the environment is never shown)
sed -i "s|\${env.TARGET_URL}|sqlite:$T/full/target.db|" target.yaml
head -c 150k /dev/zero > full/ballast
expect_exit 1 "$NS" run target.yaml file=in.csv
grep -qE "database or disk is full|No space left on device" "$T/err" || { cat "$T/err"; fail "the full target is not said"; }
grep -q "$T/full/target.db" "$T/err" || { cat "$T/err"; fail "the full target's path is not named"; }
committed=$(sqlite3 "$T/full/target.db" "SELECT count(*) FROM k")
[ "$committed" -lt 18000 ] || fail "the load went on past the full disk ($committed rows)"
rm full/ballast
expect_exit 0 "$NS" run target.yaml file=in.csv
assert_eq "$(sqlite3 "$T/full/target.db" "SELECT count(*), count(DISTINCT id) FROM k")" "18000|18000" "target rows after the disk had room again"
echo "ok: a full disk under the SQLite target"

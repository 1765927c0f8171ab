#!/usr/bin/env bash
# Small holes that each lost or hid data (issue 8), each done for real: a
# read-only repository (another user's file, no -shm can be made), a
# repository that does not exist (list and show must not create one), a
# header with two columns differing only in case, NUL bytes in a field,
# parameters that are not UTF-8, a job file nested 100,000 deep, and
# NIGHTSHIFT_LEASE values that are not a lease.
source "$(dirname "$0")/lib.sh"
export TARGET_DB="$T/t.db" TARGET_URL="sqlite:$T/t.db"
sqlite3 "$TARGET_DB" "CREATE TABLE k (id INTEGER PRIMARY KEY, name TEXT)"
load_job job.yaml holes k "skip: {limit: 10}"
printf 'id,name\n1,a\n2,b\n' > in.csv

# --- read-only commands on a repository they may not write ----------------
expect_exit 0 "$NS" run job.yaml file=in.csv
shared=$(mktemp -d /tmp/ns-ro.XXXXXX)
chmod 755 "$shared"
cp "$T/repo.db" "$shared/repo.db"
cp job.yaml in.csv "$shared/"
chmod 644 "$shared"/*
as_other() { runuser -u postgres -- "$@"; }
as_other test -r "$shared/repo.db" || fail "the other user cannot read the copied repository"
as_other test -w "$shared" && fail "the other user may write the folder: the test lost its point"
expect_exit 0 as_other "$NS" list --repository "sqlite:$shared/repo.db"
grep -q 'holes' "$T/out" || fail "list of a read-only repository: $(cat "$T/out" "$T/err")"
expect_exit 0 as_other "$NS" show 1 --json --repository "sqlite:$shared/repo.db"
grep -q '"status": "COMPLETED"' "$T/out" || fail "show of a read-only repository"
# A command that writes says why it cannot, and changes nothing.
expect_exit 1 as_other "$NS" run "$shared/job.yaml" "file=$shared/in.csv" --repository "sqlite:$shared/repo.db"
expect_err "repository"
cmp -s "$T/repo.db" "$shared/repo.db" || fail "the read-only repository was changed"
# A read-only mount (as root: a mount namespace of the test's own).
if [ "$(id -u)" = 0 ]; then
    unshare -m sh -c "mount --bind '$shared' '$shared' && mount -o remount,bind,ro '$shared' &&
        ! touch '$shared/probe' 2>/dev/null &&
        '$NS' show 1 --repository 'sqlite:$shared/repo.db'" > "$T/out" 2> "$T/err" ||
        fail "show on a read-only mount: $(cat "$T/err")"
    grep -q 'COMPLETED' "$T/out" || fail "show on a read-only mount: $(cat "$T/out")"
fi
rm -rf "$shared"

# --- a repository that does not exist is not created by list or show ----
mkdir empty && cd empty
expect_exit 1 env -u NIGHTSHIFT_REPOSITORY "$NS" list
expect_err "no repository at nightshift.db"
expect_exit 1 env -u NIGHTSHIFT_REPOSITORY "$NS" show 1
[ -e nightshift.db ] && fail "list or show created nightshift.db"
cd ..
echo "holes: read-only repositories"

# --- a header with two columns that differ only in case -----------------
printf 'id,name,ID\n1,a,7\n' > case.csv
expect_exit 1 "$NS" run job.yaml file=case.csv
expect_err "input columns 'id' and 'ID' both name column id of table k"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM k WHERE id = 7 OR name = 'a' AND id <> 1")" 0 "rows of the refused header"

# --- NUL bytes: rejected (as PostgreSQL does), written as \x00 -----------
sql "$TARGET_DB" "DELETE FROM k"
printf 'id,name\n1,a\x00b\n2,ok\n' > nul.csv
expect_exit 0 "$NS" run job.yaml file=nul.csv
assert_eq "$(sql "$TARGET_DB" "SELECT group_concat(id) FROM k")" 2 "rows: the record with a NUL is not stored"
rej=$(ls rejects/holes-*-load.csv | tail -1)
grep -qF '2,name,22021,' "$rej" || fail "the NUL record was not rejected as 22021: $(cat "$rej")"
grep -qF '"1,a\x00b"' "$rej" || grep -qF ',1,a\x00b' "$rej" || fail "the NUL was not written as \\x00: $(cat "$rej")"
python3 -c "import sys; sys.exit(b'\0' in open('$rej', 'rb').read())" || fail "a NUL byte in the rejects file"
echo "holes: headers and NUL bytes"

# --- parameters that are not UTF-8 ---------------------------------------
expect_exit 2 "$NS" run job.yaml "file=$(printf 'in\xff.csv')"
expect_err "parameter 'file': the value is not valid UTF-8 (byte 3 is 0xFF)"
expect_exit 2 "$NS" run job.yaml file=in.csv "$(printf 'how=\xc3(')"
expect_err "parameter 'how': the value is not valid UTF-8"
expect_exit 0 "$NS" list --json
python3 -c "import json, sys; json.load(sys.stdin)" < "$T/out" || fail "list --json is not JSON"

# --- a job file nested 100,000 deep --------------------------------------
python3 -c "print('job: x\nsteps: ' + '[' * 100000 + ']' * 100000)" > deep.yaml
t0=$(date +%s.%N)
expect_exit 2 "$NS" validate deep.yaml
expect_err "deep.yaml:2: yaml: nested deeper than 64 levels"
python3 -c "import sys; sys.exit(float('$(date +%s.%N)') - $t0 > 5)" || fail "validate of a deep file took over 5 s"
python3 -c "print('job: x\nsteps: ' + '{a: ' * 100000 + '}' * 100000)" > deep2.yaml
expect_exit 2 "$NS" validate deep2.yaml
expect_err "nested deeper than 64 levels"
head -c $((17 << 20)) /dev/zero | tr '\0' '#' > huge.yaml
expect_exit 2 "$NS" validate huge.yaml
expect_err "too large for a job file"

# --- NIGHTSHIFT_LEASE -----------------------------------------------------
for bad in garbage 0 -5 3000000 1e400 nan ''; do
    expect_exit 2 env NIGHTSHIFT_LEASE="$bad" "$NS" run job.yaml file=in.csv how=lease
    expect_err "NIGHTSHIFT_LEASE: '$bad' is not a number of seconds"
done
expect_exit 0 env NIGHTSHIFT_LEASE=2000000 "$NS" run job.yaml file=in.csv how=lease
echo "holes: parameters, deep job files, leases"

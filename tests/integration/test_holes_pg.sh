#!/usr/bin/env bash
# The small holes of test_holes.sh on PostgreSQL: a header with two columns
# differing only in case, NUL bytes (22021, written as \x00), the longest
# lease (its idle_in_transaction_session_timeout must fit), and list/show
# for a database user who may only read the repository.
source "$(dirname "$0")/lib.sh"
url=$(pg_db ns_holes)
export TARGET_URL=$url NIGHTSHIFT_REPOSITORY=$url
psql "$url" -qAtX -c "CREATE TABLE k (id integer PRIMARY KEY, name text)" >/dev/null
load_job job.yaml holes-pg k "skip: {limit: 10}"

printf 'id,name,ID\n1,a,7\n' > case.csv
expect_exit 1 "$NS" run job.yaml file=case.csv
expect_err "input columns 'id' and 'ID' both name column id of table"

printf 'id,name\n1,a\x00b\n2,ok\n' > nul.csv
expect_exit 0 env NIGHTSHIFT_LEASE=2000000 "$NS" run job.yaml file=nul.csv
assert_eq "$(psql "$url" -qAtX -c "SELECT string_agg(id::text, ',') FROM k")" 2 "rows: the record with a NUL is not stored"
rej=$(ls rejects/holes-pg-*-load.csv | tail -1)
grep -qF '2,name,22021,' "$rej" || fail "the NUL record was not rejected as 22021: $(cat "$rej")"
grep -qF 'a\x00b' "$rej" || fail "the NUL was not written as \\x00: $(cat "$rej")"

# A role that may only read the repository's tables.
psql "$url" -qAtX -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || fail "reader role"
DO $$ BEGIN CREATE ROLE ns_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA nightshift TO ns_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA nightshift TO ns_reader;
SQL
reader="${url/user=postgres/user=ns_reader}"
expect_exit 0 "$NS" list --repository "$reader"
grep -q 'holes-pg' "$T/out" || fail "list as a reading user: $(cat "$T/out" "$T/err")"
expect_exit 0 "$NS" show 2 --json --repository "$reader"
grep -q '"status": "COMPLETED"' "$T/out" || fail "show as a reading user"
# A database with no repository: list says so, and creates nothing.
empty=$(pg_db ns_holes_empty)
expect_exit 1 "$NS" list --repository "$empty"
expect_err "no nightshift repository in"
assert_eq "$(psql "$empty" -qAtX -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'nightshift'")" 0 \
    "schemas list created"
echo "holes (PostgreSQL): ok"

#!/usr/bin/env bash
# The dirty CSV of test_dirty_load.sh into PostgreSQL: the same good rows load
# and the same records are rejected with the same lines and codes as on
# SQLite; server-side rejects carry the server's message and detail.
source "$(dirname "$0")/lib.sh"
export TARGET_URL
TARGET_URL=$(pg_db ns_dirty)
psql "$TARGET_URL" -q < "$NS_SRC/tests/integration/dirty.sql"
python3 "$NS_SRC/tests/integration/gen_dirty.py" 30000 in.csv want_rejects.txt want_ids.txt
sed 's|"sqlite:${env.TARGET_DB}"|"${env.TARGET_URL}"|' "$NS_SRC/tests/integration/dirty.yaml" > job.yaml
expect_exit 0 "$NS" run job.yaml file=in.csv
python3 - rejects/dirty-load-1.csv > got_rejects.txt <<'PY'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    for row in list(csv.reader(f))[1:]:
        print(row[0], row[2])
PY
diff -u want_rejects.txt got_rejects.txt >&2 || fail "rejects differ from the expected lines/codes"
psql "$TARGET_URL" -Atc "SELECT id FROM items ORDER BY id" > got_ids.txt
diff -q want_ids.txt got_ids.txt > /dev/null || fail "loaded ids differ from the good rows"
grep -q '^[0-9]*,email,23505,"duplicate key value violates unique constraint ""items_email_key"" (Key (email)=(u1@e.com) already exists.)"' rejects/dirty-load-1.csv ||
    fail "a unique violation lacks its detail or column"
grep -q ',23503,"insert or update on table ""items"" violates foreign key constraint' rejects/dirty-load-1.csv ||
    fail "a foreign-key violation was not isolated"
expect_exit 4 "$NS" run job.yaml file=in.csv
echo "dirty load into PostgreSQL: ok ($(wc -l < want_rejects.txt) rejects checked)"

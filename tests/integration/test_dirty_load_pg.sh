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

# Probable duplicates are held out of the COPY and sent after it: the earlier
# of two colliding records is still the one kept, within a chunk and across
# chunks; a duplicate spelled differently (" 7" for 7) is caught by the server
# instead; NULLs in a unique column never collide.
psql "$TARGET_URL" -qc "CREATE TABLE d (id integer PRIMARY KEY, code text UNIQUE, v text NOT NULL)"
printf 'id,code,v\n1,a,first\n2,b,x\n1,c,second\n3,,x\n4,,x\n7,g,seven\n 7,h,spaced\n5,a,dup-code\n6,f,x\n' > dups.csv
TARGET_URL="$TARGET_URL" load_job dups.yaml dups d "skip: {limit: 10}" 'rejects: "dups-rejects.csv"'
sed -i 's/chunk: 100/chunk: 4/' dups.yaml
expect_exit 0 "$NS" run dups.yaml file=dups.csv
assert_eq "$(psql "$TARGET_URL" -Atc "SELECT string_agg(id || ':' || coalesce(code, '-') || ':' || v, ' ' ORDER BY id) FROM d")" \
    "1:a:first 2:b:x 3:-:x 4:-:x 6:f:x 7:g:seven" "rows kept"
assert_eq "$(cut -d, -f1-3 dups-rejects.csv | tail -n +2 | tr '\n' ' ')" "4,id,23505 8,id,23505 9,code,23505 " \
    "rejects (line, column, code)"
echo "held duplicates: ok"

# Deferred constraints are checked at the end of each statement, so the row
# at fault is found by bisection instead of failing the whole chunk's COMMIT.
psql "$TARGET_URL" -q -c "CREATE TABLE dp (id integer PRIMARY KEY)" -c "INSERT INTO dp VALUES (1), (2)" \
    -c "CREATE TABLE dc (id integer PRIMARY KEY, p integer REFERENCES dp DEFERRABLE INITIALLY DEFERRED,
        u integer UNIQUE DEFERRABLE INITIALLY DEFERRED)"
printf 'id,p,u\n1,1,10\n2,9,20\n3,2,30\n4,1,10\n5,2,50\n' > deferred.csv
TARGET_URL="$TARGET_URL" load_job deferred.yaml deferred dc "skip: {limit: 10}" 'rejects: "deferred-rejects.csv"'
expect_exit 0 "$NS" run deferred.yaml file=deferred.csv
assert_eq "$(psql "$TARGET_URL" -Atc "SELECT string_agg(id::text, ' ' ORDER BY id) FROM dc")" "1 3 5" "rows kept (deferred)"
assert_eq "$(cut -d, -f1,3 deferred-rejects.csv | tail -n +2 | tr '\n' ' ')" "3,23503 5,23505 " \
    "rejects of deferred constraints (line, code)"
echo "deferred constraints: ok"

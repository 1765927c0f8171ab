#!/usr/bin/env bash
# A foreign key's parents read into a filter (docs/internals.md, "PostgreSQL
# target"): once a load meets rows without a parent, the writer reads the
# parent's keys and holds the rows whose key is not among them. The filter
# may only cost time: keys spelled differently from the parent's ("+7",
# "007", " 7") load, text keys compare exactly (a backslash, a tab, "A"
# for "a"), and a parent deleted or added after the filter was read is
# judged by the server: rows of a deleted parent are refused, rows of a new
# one load.
source "$(dirname "$0")/lib.sh"
export TARGET_URL
TARGET_URL=$(pg_db ns_parents)
psql "$TARGET_URL" -q <<'SQL'
CREATE TABLE parents (id integer PRIMARY KEY);
INSERT INTO parents SELECT g FROM generate_series(1, 300) g;
CREATE TABLE tags (name text PRIMARY KEY);
INSERT INTO tags VALUES ('a'), ('b'), (E'back\\slash'), (E'tab\there'), ('ünï'), ('');
CREATE TABLE acc (
    id  bigint PRIMARY KEY,
    ref bigint REFERENCES parents,
    tag text REFERENCES tags
);
SQL
# The model: a row loads when its ref (an integer, however spelled) is a
# parent and its tag is exactly a tag; NULLs have no parent to need.
python3 - <<'PY'
import csv, random
random.seed(5)
parents = set(range(1, 301))
tags = ["a", "b", "back\\slash", "tab\there", "ünï", ""]
bad_tags = ["A", "back\\\\slash", "tab here", "uni", "c"]
want = []
with open("in.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["id", "ref", "tag"])
    for n in range(1, 3001):
        ref, tag = random.randint(1, 300), random.choice(tags)
        spelled = random.choice([str(ref), f"+{ref}", f"00{ref}", f" {ref}", f"{ref} "])
        k = random.random()
        if k < 0.05:
            spelled = str(random.randint(301, 10**9))
        elif k < 0.08:
            tag = random.choice(bad_tags)
        elif k < 0.10:
            spelled = ""  # NULL: no parent needed
        if n == 1:
            spelled = "999999"  # the first row turns the probe on
        okref = spelled == "" or int(spelled) in parents
        if not okref:
            want.append(f"{n + 1} 23503")
        elif tag not in tags:
            want.append(f"{n + 1} 23503")
        w.writerow([n, spelled, tag])
open("want.txt", "w").write("\n".join(want) + "\n")
PY
load_job job.yaml parents acc "skip: {limit: 100000}" 'rejects: "rejects/${execution.id}-${params.how}.csv"'
psql "$TARGET_URL" -qc "ALTER DATABASE ns_parents SET log_statement = 'all'"
TARGET_URL="$TARGET_URL&application_name=nsfirst$$" expect_exit 0 "$NS" run job.yaml file=in.csv how=first
psql "$TARGET_URL" -qc "ALTER DATABASE ns_parents RESET log_statement"
sleep 0.2 # the log is written asynchronously
# The filters were read: the parents' and the tags' keys.
grep -E "\] nsfirst$$ LOG:  (statement|execute)" "$(pg_log)" > first.log || true
grep -q 'COPY (SELECT id FROM parents' first.log || fail "the parents' keys were not read"
grep -q 'COPY (SELECT name FROM tags' first.log || fail "the tags were not read"
got_rejects rejects/1-first.csv > got.txt
diff -u want.txt got.txt > diff.txt || { head -20 diff.txt >&2; fail "the rejects differ from the model's"; }
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc")" "$((3000 - $(grep -c . want.txt)))" \
    "rows in the table"
python3 - rejects/1-first.csv <<'PY' || exit 1
import csv, sys
for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")):
    assert "violates foreign key constraint" in r["message"] and "is not present in table" in r["message"], r
PY

codes() { got_rejects "$1" | awk '{print $2}' | sort | uniq -c | awk '{print $1, $2}' | paste -sd,; }

# Parents changed after the filter was read. The input is a pipe: the first
# chunk (its first row without a parent, so the filter is read) is written
# and committed; then parent 7 is deleted and parent 5000 added; then rows
# of both. The server decides: 7's are refused, 5000's load.
psql "$TARGET_URL" -qc "DELETE FROM nightshift_checkpoint" -c "TRUNCATE acc"
mkfifo pipe.csv
python3 - <<'PY'
with open("first.csv", "w") as f:
    f.write("id,ref,tag\n1,999999,a\n")
    for n in range(2, 101):
        f.write(f"{n},{n % 6 + 1},a\n")  # never 7
with open("second.csv", "w") as f:
    for n in range(101, 401):
        f.write(f"{n},{7 if n % 3 == 0 else 5000 if n % 3 == 1 else 1},b\n")
PY
"$NS" run job.yaml file=pipe.csv how=changed > changed.out 2>&1 &
ns_pid=$!
exec 3> pipe.csv
cat first.csv >&3
for _ in $(seq 100); do
    [ "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc")" == 99 ] && break
    sleep 0.1
done
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc")" 99 "rows of the first chunk committed"
psql "$TARGET_URL" -qc "DELETE FROM parents WHERE id = 7" -c "INSERT INTO parents VALUES (5000)"
cat second.csv >&3
exec 3>&-
wait "$ns_pid" || { cat changed.out >&2; fail "the load with changed parents failed"; }
rm -f pipe.csv
assert_eq "$(codes rejects/2-changed.csv)" \
    "101 23503" "rejects of the changed parents (row 1 and parent 7's 100)"
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc WHERE ref = 5000")" 100 "rows of the added parent"
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc")" 299 "rows in the table"

# A loader that may reference the parents but not read them: no filter, no
# probe (both refused), the server's own check still decides every row.
psql "$TARGET_URL" -q <<'SQL'
SET client_min_messages = warning;
DROP ROLE IF EXISTS ns_parents_loader;
CREATE ROLE ns_parents_loader LOGIN;
GRANT REFERENCES ON parents TO ns_parents_loader;
GRANT USAGE, CREATE ON SCHEMA public TO ns_parents_loader;
GRANT ALL ON nightshift_checkpoint TO ns_parents_loader;
SET ROLE ns_parents_loader;
CREATE TABLE blind (id bigint PRIMARY KEY, ref bigint REFERENCES parents);
SQL
python3 -c "
print('id,ref')
for n in range(1, 501): print(f'{n},{999999 if n % 20 == 1 else n % 6 + 1}')" > blind.csv
load_job blind.yaml blind blind "skip: {limit: 100000}" 'rejects: "rejects/${execution.id}-blind.csv"'
TARGET_URL="${TARGET_URL/user=postgres/user=ns_parents_loader}" expect_exit 0 "$NS" run blind.yaml file=blind.csv
assert_eq "$(codes rejects/3-blind.csv)" \
    "25 23503" "rows without a parent, for a loader that cannot read the parents"
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM blind")" 475 "rows the blind loader loaded"
psql "$TARGET_URL" -q -c "SET client_min_messages = warning" -c "DROP TABLE blind" \
    -c "REVOKE ALL ON nightshift_checkpoint FROM ns_parents_loader" \
    -c "REVOKE ALL ON SCHEMA public FROM ns_parents_loader" -c "REVOKE ALL ON parents FROM ns_parents_loader" \
    -c "DROP ROLE ns_parents_loader"

# Parents past their estimate: 200,000 whose statistics say 100. The keys
# are read, found too many for the filter, and dropped: the probe goes on,
# and the rejects are exact.
psql "$TARGET_URL" -q <<'SQL'
CREATE TABLE grown (id integer PRIMARY KEY) WITH (autovacuum_enabled = false);
INSERT INTO grown SELECT g FROM generate_series(1, 100) g;
ANALYZE grown;
INSERT INTO grown SELECT g FROM generate_series(101, 200000) g;
CREATE TABLE kids (id integer PRIMARY KEY, g integer REFERENCES grown);
SQL
python3 -c "
print('id,g')
for n in range(1, 1001): print(f'{n},{300000 if n % 25 == 1 else n * 100}')" > kids.csv
load_job kids.yaml kids kids "skip: {limit: 100000}" 'rejects: "rejects/${execution.id}-kids.csv"'
psql "$TARGET_URL" -qc "ALTER DATABASE ns_parents SET log_statement = 'all'"
TARGET_URL="$TARGET_URL&application_name=nskids$$" expect_exit 0 "$NS" run kids.yaml file=kids.csv
psql "$TARGET_URL" -qc "ALTER DATABASE ns_parents RESET log_statement"
sleep 0.2 # the log is written asynchronously
assert_eq "$(codes rejects/4-kids.csv)" \
    "40 23503" "rows without a parent in the grown table"
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM kids")" 960 "rows with a parent"
grep -E "\] nskids$$ LOG:  (statement|execute)" "$(pg_log)" > kids.log || true
grep -q "COPY (SELECT id FROM grown" kids.log || fail "the grown parents were not read"
# the probe of grown goes on after its keys were dropped
awk '/COPY \(SELECT id FROM grown/ {read = 1} read && /FROM grown p WHERE/ {found = 1} END {exit !found}' \
    kids.log || fail "the probe stopped after the grown parents' keys were dropped"

echo "parents: $(grep -c . want.txt) rows without a parent refused as the model says; changed parents judged by the server"

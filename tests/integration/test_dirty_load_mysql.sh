#!/usr/bin/env bash
# The dirty CSV of test_dirty_load.sh into MariaDB (a server of the test's
# own, fixture "mysql"): the same good rows load and the same records are
# rejected at the same lines as on SQLite and PostgreSQL, each with the
# server's own error number, SQLSTATE and words; nothing MySQL would coerce
# (12x -> 12, a bad date -> zeros, a long string cut) is stored. Then the
# other modes (upsert, update, replace), a trigger's SIGNAL, a restart.
source "$(dirname "$0")/lib.sh"
export TARGET_URL
TARGET_URL=$(my_db ns_dirty)
my_sql ns_dirty < "$NS_SRC/tests/integration/dirty_mysql.sql"
python3 "$NS_SRC/tests/integration/gen_dirty.py" 30000 in.csv want_rejects.txt want_ids.txt
# MariaDB's SQLSTATE for each class (a bad integer or enum word is its 1265,
# 01000; every integrity violation is 23000; the error number tells them apart).
sed -e 's/ 22P02$/ 01000/; s/ 2350[2359]$/ 23000/; s/ 23514$/ 23000/' want_rejects.txt > want_my.txt
sed 's|"sqlite:${env.TARGET_DB}"|"${env.TARGET_URL}"|' "$NS_SRC/tests/integration/dirty.yaml" > job.yaml
expect_exit 0 "$NS" run job.yaml file=in.csv
python3 - rejects/dirty-load-1.csv > got_rejects.txt <<'PY'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    for row in list(csv.reader(f))[1:]:
        print(row[0], row[2])
PY
diff -u want_my.txt got_rejects.txt >&2 || fail "rejects differ from the expected lines/codes"
my_sql ns_dirty -e "SELECT id FROM items ORDER BY id" > got_ids.txt
diff -q want_ids.txt got_ids.txt > /dev/null || fail "loaded ids differ from the good rows"
# No value of a rejected row was stored cut or zeroed: every stored row is
# its input row (the good rows' fields, compared as the server prints them).
assert_eq "$(my_sql ns_dirty -e "SELECT count(*) FROM items WHERE day = '0000-00-00' OR qty IS NULL")" 0 "zeroed values"
for want in "qty,01000,Data truncated for column 'qty' at row 1 (MySQL error 1265)" \
    "day,22007,Incorrect date value: '2025-02-30' for column \`ns_dirty\`.\`items\`.\`day\` at row 1 (MySQL error 1292)" \
    "email,22001,Data too long for column 'email' at row 1 (MySQL error 1406)" \
    "email,23000,Column 'email' cannot be null (MySQL error 1048)" \
    ",23000,CONSTRAINT \`items.qty\` failed for \`ns_dirty\`.\`items\` (MySQL error 4025)" \
    ",23000,Duplicate entry 'u1@e.com' for key 'email' (MySQL error 1062)" \
    ",23000,\"Cannot add or update a child row: a foreign key constraint fails"; do
    grep -qF -- "$want" rejects/dirty-load-1.csv || fail "no reject reads: $want"
done
expect_exit 4 "$NS" run job.yaml file=in.csv
echo "dirty load into MariaDB: ok ($(wc -l < want_rejects.txt) rejects checked)"

# The earlier of two colliding records is kept, within a chunk and across
# chunks; NULLs in a unique column never collide.
my_sql ns_dirty -e "CREATE TABLE d (id integer PRIMARY KEY, code varchar(10) UNIQUE, v text NOT NULL)"
printf 'id,code,v\n1,a,first\n2,b,x\n1,c,second\n3,,x\n4,,x\n7,g,seven\n5,a,dup-code\n6,f,x\n' > dups.csv
load_job dups.yaml dups d "skip: {limit: 10}" 'rejects: "dups-rejects.csv"'
sed -i 's/chunk: 100/chunk: 4/' dups.yaml
expect_exit 0 "$NS" run dups.yaml file=dups.csv
assert_eq "$(my_sql ns_dirty -e "SELECT group_concat(concat(id, ':', coalesce(code, '-'), ':', v) ORDER BY id SEPARATOR ' ') FROM d")" \
    "1:a:first 2:b:x 3:-:x 4:-:x 6:f:x 7:g:seven" "rows kept"
assert_eq "$(cut -d, -f1,3 dups-rejects.csv | tail -n +2 | tr '\n' ' ')" "4,23000 8,23000 " "rejects (line, code)"
echo "duplicates: ok"

# A trigger's SIGNAL fails the whole LOAD statement (no row named): the
# rows are split until the one it refuses stands alone.
my_sql ns_dirty -e "CREATE TABLE tr (id integer PRIMARY KEY, v varchar(20))"
my_sql ns_dirty <<'SQL'
DELIMITER //
CREATE TRIGGER tr_refuse BEFORE INSERT ON tr FOR EACH ROW
BEGIN
  IF NEW.v LIKE 'bad%' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by trigger'; END IF;
END//
DELIMITER ;
SQL
python3 -c "
print('id,v')
for i in range(1, 1001): print(f'{i},{\"bad\" if i % 97 == 0 else \"ok\"}{i}')" > tr.csv
load_job tr.yaml tr tr "skip: {limit: 100}" 'rejects: "tr-rejects.csv"'
expect_exit 0 "$NS" run tr.yaml file=tr.csv
assert_eq "$(my_sql ns_dirty -e "SELECT count(*), sum(v LIKE 'bad%') FROM tr")" "990	0" "rows of the trigger's table"
assert_eq "$(cut -d, -f1,3 tr-rejects.csv | tail -n +2 | tr '\n' ' ')" \
    "$(for i in $(seq 97 97 1000); do printf '%s,45000 ' $((i + 1)); done)" "the trigger's rejects"
grep -q 'refused by trigger (MySQL error 1644)' tr-rejects.csv || fail "the trigger's words are not in the rejects"
# The trigger's refusals mixed with a CHECK's and a foreign key's in large
# chunks: a CHECK's first refusal found while the trigger's are being
# isolated must not send any row twice (each reject once, every good row in).
my_sql ns_dirty -e "CREATE TABLE trp (id int PRIMARY KEY); INSERT INTO trp SELECT seq FROM seq_1_to_10;
    CREATE TABLE trc (id int PRIMARY KEY, v varchar(20), n int CHECK (n >= 0), p int, FOREIGN KEY (p) REFERENCES trp (id))"
my_sql ns_dirty <<'SQL'
DELIMITER //
CREATE TRIGGER trc_refuse BEFORE INSERT ON trc FOR EACH ROW
BEGIN
  IF NEW.v LIKE 'bad%' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by trigger'; END IF;
END//
DELIMITER ;
SQL
python3 -c '
import random, sys
random.seed(7)
want = open("want_trc.txt", "w")
print("id,v,n,p")
for i in range(1, 20001):
    v, n, p, code = f"ok{i}", i % 50, 1 + i % 10, None
    r = random.random()
    if r < 0.004: v, code = f"bad{i}", "45000"
    elif r < 0.008: n, code = -1, "23000"
    elif r < 0.012: p, code = 99, "23000"
    print(f"{i},{v},{n},{p}")
    if code: want.write(f"{i + 1},{code}\n")
' > trc.csv
load_job trc.yaml trc trc "skip: {limit: 1000}" 'rejects: "trc-rejects.csv"'
sed -i 's/chunk: 100/chunk: 5000/' trc.yaml
expect_exit 0 "$NS" run trc.yaml file=trc.csv
cut -d, -f1,3 trc-rejects.csv | tail -n +2 > got_trc.txt
diff -u want_trc.txt got_trc.txt >&2 || fail "the mixed refusals' rejects"
assert_eq "$(my_sql ns_dirty -e "SELECT count(*) FROM trc")" "$((20000 - $(wc -l < want_trc.txt)))" "rows of the mixed table"
echo "trigger SIGNAL: ok"

# upsert, update, replace
my_sql ns_dirty -e "CREATE TABLE m (id integer PRIMARY KEY, v varchar(5) NOT NULL, n int CHECK (n >= 0))"
my_sql ns_dirty -e "INSERT INTO m VALUES (1, 'old', 1), (2, 'old', 2), (3, 'old', 3)"
printf 'id,v,n\n2,new,20\n4,new,40\n5,toolong,5\n6,new,-1\n3,new,30\n' > up.csv
WRITER_MODE="upsert, key: [id]" load_job up.yaml up m "skip: {limit: 10}" 'rejects: "up-rejects.csv"'
expect_exit 0 "$NS" run up.yaml file=up.csv
assert_eq "$(my_sql ns_dirty -e "SELECT group_concat(concat(id, ':', v, ':', n) ORDER BY id SEPARATOR ' ') FROM m")" \
    "1:old:1 2:new:20 3:new:30 4:new:40" "after upsert"
assert_eq "$(cut -d, -f1,3 up-rejects.csv | tail -n +2 | tr '\n' ' ')" "4,22001 5,23000 " "upsert rejects"
printf 'id,v\n1,upd\n9,nope\n4,upd\n' > upd.csv
WRITER_MODE="update, key: [id]" load_job upd.yaml upd m "skip: {limit: 10}" 'rejects: "upd-rejects.csv"'
expect_exit 0 "$NS" run upd.yaml file=upd.csv
assert_eq "$(my_sql ns_dirty -e "SELECT group_concat(concat(id, ':', v) ORDER BY id SEPARATOR ' ') FROM m")" \
    "1:upd 2:new 3:new 4:upd" "after update"
assert_eq "$(cut -d, -f1,3 upd-rejects.csv | tail -n +2 | tr '\n' ' ')" "3,NS_NO_ROW " "update rejects"
printf 'id,v,n\n7,a,7\n8,b,8\n' > rep.csv
WRITER_MODE=replace load_job rep.yaml rep m
expect_exit 0 "$NS" run rep.yaml file=rep.csv
assert_eq "$(my_sql ns_dirty -e "SELECT group_concat(id ORDER BY id) FROM m")" "7,8" "after replace"
echo "modes: ok"

# BOOLEAN (TINYINT(1)): the words PostgreSQL and SQLite read as truth values
# are stored as 1/0, numbers as they are; anything else is the server's error.
my_sql ns_dirty -e "CREATE TABLE b (id int PRIMARY KEY, f boolean NOT NULL, n tinyint)"
printf 'id,f,n\n1,true,1\n2,FALSE,2\n3,yes,3\n4,off,4\n5,1,5\n6,0,6\n7,maybe,7\n8,t,true\n' > b.csv
load_job b.yaml b b "skip: {limit: 10}" 'rejects: "b-rejects.csv"'
expect_exit 0 "$NS" run b.yaml file=b.csv
assert_eq "$(my_sql ns_dirty -e "SELECT group_concat(concat(id, ':', f) ORDER BY id) FROM b")" \
    "1:1,2:0,3:1,4:0,5:1,6:0" "truth values"
assert_eq "$(cut -d, -f1-3 b-rejects.csv | tail -n +2 | tr '\n' ' ')" "8,f,22007 9,n,22007 " \
    "a word that is no truth value; true into a TINYINT that is not TINYINT(1)"
echo "booleans: ok"

# upsert needs a unique key on exactly its key columns: without one MySQL's
# ON DUPLICATE KEY UPDATE would insert every record; refused before a row.
my_sql ns_dirty -e "CREATE TABLE nk (id int, code varchar(5) UNIQUE, v varchar(5))"
printf 'id,code,v\n1,a,x\n1,b,y\n' > nk.csv
WRITER_MODE="upsert, key: [id]" load_job nk.yaml nk nk
expect_exit 1 "$NS" run nk.yaml file=nk.csv
expect_err "upsert into nk needs a primary key or unique index on exactly its key (id)"
assert_eq "$(my_sql ns_dirty -e "SELECT count(*) FROM nk")" 0 "rows of a refused upsert"
WRITER_MODE="upsert, key: [CODE]" load_job nk2.yaml nk2 nk
expect_exit 0 "$NS" run nk2.yaml file=nk.csv
echo "upsert key: ok"

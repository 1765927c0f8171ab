#!/usr/bin/env bash
# MariaDB/MySQL connections beyond the table writer (a server of the test's
# own, fixture "mysql"): URL forms and what a bad one says; a password never
# shown; the keyset query reader (the dormant-users job of test_keyset.sh,
# reading and updating one MariaDB table, across a kill and a restart);
# sql, assert and rebuild steps with bound parameters; a statement_timeout
# that ends a statement with KILL QUERY; a server that is not there.
source "$(dirname "$0")/lib.sh"
export APP
APP=$(my_db ns_app)
sock=$(my_sock)
n=0

# --- URLs
my_sql mysql -e "CREATE USER IF NOT EXISTS 'nsuser'@'localhost' IDENTIFIED BY 's3cret-pw'; GRANT ALL ON ns_app.* TO 'nsuser'@'localhost'"
cat > url.yaml <<'EOF'
job: url
params:
  try: {type: int, default: 0}
connections:
  db: "${env.URL}"
steps:
  - name: s
    sql: {connection: db, script: "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)"}
EOF
URL="mariadb://nsuser:s3cret-pw@localhost/ns_app?socket=$sock" expect_exit 0 "$NS" run url.yaml try=1
URL="mysql://nsuser:wrong-pw@localhost/ns_app?socket=$sock" expect_exit 1 "$NS" run url.yaml try=2
expect_err "cannot connect: Access denied for user 'nsuser'@'localhost'"
URL="mysql://nsuser:wrong-pw@localhost/ns_app?socket=$sock&bogus=1" expect_exit 1 "$NS" run url.yaml try=3
expect_err "unknown parameter 'bogus'"
URL="mysql://nsuser:s3cret-pw@localhost/ns_app?socket=$T/nothing.sock" expect_exit 1 "$NS" run url.yaml try=4
expect_err "cannot connect"
URL="mysql://nsuser:s3cret-pw@localhost:99999/ns_app" expect_exit 1 "$NS" run url.yaml try=5
expect_err "the port is not a number from 1 to 65535"
# A password written in the job file itself, in the URL's userinfo and as
# ?password=, on runs that fail at connect and on a parameter: shown as ***
# in every message, never in stderr, stdout, the repository or a file here
# (but the job files, which hold it).
for form in "mysql://nsuser:Wr0ng-Secret-7@localhost/ns_app?socket=$sock" \
    "mysql://nsuser@localhost/ns_app?socket=$sock&password=Wr0ng-Secret-7" \
    "mysql://nsuser:Wr0ng-Secret-7@localhost/ns_app?socket=$sock&bogus=1"; do
    sed "s|\${env.URL}|${form//&/\\&}|" url.yaml > lit.yaml
    n=$((n + 1))
    "$NS" run lit.yaml try=$((100 + n)) > "lit-$n.out" 2> "lit-$n.err" && fail "a wrong password connected"
    grep -q '\*\*\*' "lit-$n.err" || fail "the URL is not shown redacted: $(cat "lit-$n.err")"
done
"$NS" list --json > list.json
for id in $("$NS" list --json | python3 -c "import json,sys; print(' '.join(str(e['id']) for e in json.load(sys.stdin)))"); do
    "$NS" show "$id" --json >> list.json
done
grep -rl --exclude="*.yaml" "s3cret-pw\|wrong-pw\|Wr0ng-Secret-7" . "${NIGHTSHIFT_REPOSITORY#sqlite:}" 2> /dev/null &&
    fail "a password was written out"
expect_exit 1 "$NS" run --repository "mysql://root@localhost/ns_app?socket=$sock" url.yaml
expect_err "the mysql driver cannot hold a job repository"
echo "urls: ok"

# --- the keyset reader: the dormant-users job, reading and updating one table
my_sql ns_app <<'SQL'
CREATE TABLE users (id INT PRIMARY KEY, last_login DATE NOT NULL, status VARCHAR(10) NOT NULL) ENGINE=InnoDB;
INSERT INTO users SELECT seq, IF(seq % 6 = 0, '2026-10-01', '2024-05-01'), 'active' FROM seq_1_to_12000;
SQL
want=$(my_sql ns_app -e "SELECT count(*) FROM users WHERE last_login < '2025-11-21'")
cat > dormant.yaml <<'EOF'
job: dormant-users
params:
  cutoff: {type: date, required: true}
connections:
  app: "${env.APP}"
steps:
  - name: switch
    chunk: 100
    reader:
      query:
        connection: app
        sql: >
          SELECT id, 'dormant' AS status FROM users
          WHERE status = 'active' AND last_login < :cutoff
        key: [id]
    writer:
      table: {connection: app, name: users, mode: update, key: [id]}
EOF
# Dies in the middle of chunk 35 (after reading it, before its commit, as
# kill -9 would), then runs again: every row read once over both runs.
export NIGHTSHIFT_REPOSITORY="sqlite:$T/dormant-repo.db"
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=35 expect_exit 98 "$NS" run dormant.yaml cutoff=2025-11-21
expect_exit 0 "$NS" run dormant.yaml cutoff=2025-11-21
read1=$(show_field 1 "['steps'][0]['read_count']")
read2=$(show_field 2 "['steps'][0]['read_count']")
assert_eq "$(my_sql ns_app -e "SELECT count(*) FROM users WHERE status = 'dormant'")" "$want" "switched"
assert_eq "$(my_sql ns_app -e "SELECT count(*) FROM users WHERE status = 'dormant' AND last_login >= '2025-11-21'")" 0 "none too many"
assert_eq "$((read1 + read2))" "$want" "rows read over both runs (none twice, none skipped)"
echo "keyset reader: ok ($want rows, read $read1 + $read2)"

# --- sql, assert, rebuild with bound parameters; a text key, NULLs
cat > steps.yaml <<'EOF'
job: steps
params:
  floor: {type: int, default: 100}
connections:
  app: "${env.APP}"
steps:
  - name: make
    sql:
      connection: app
      script: |
        CREATE TABLE IF NOT EXISTS summary (status VARCHAR(10) PRIMARY KEY, n INT NOT NULL);
        DELETE FROM summary WHERE n < :floor;
  - name: fill
    rebuild:
      connection: app
      table: summary
      sql: "SELECT status, count(*) AS n FROM users GROUP BY status HAVING count(*) >= :floor"
  - name: check
    assert:
      connection: app
      sql: "SELECT DISTINCT status FROM users WHERE status NOT IN (SELECT status FROM summary)"
EOF
expect_exit 0 "$NS" run steps.yaml
assert_eq "$(my_sql ns_app -e "SELECT group_concat(concat(status, ':', n) ORDER BY status) FROM summary")" \
    "active:$((12000 - want)),dormant:$want" "rebuilt"
expect_exit 1 "$NS" run steps.yaml floor=20000
expect_err "assertion failed"
echo "sql steps: ok"

# --- a statement past the connection's statement_timeout is ended (KILL QUERY)
cat > slow.yaml <<'EOF'
job: slow
connections:
  app: {url: "${env.APP}", statement_timeout: 1s}
steps:
  - name: s
    retry: {limit: 0}
    sql: {connection: app, script: "SELECT SLEEP(30)"}
EOF
start=$(date +%s)
expect_exit 1 "$NS" run slow.yaml
[ $(($(date +%s) - start)) -lt 15 ] || fail "the statement was not ended"
expect_err "statement_timeout"
assert_eq "$(my_sql mysql -e "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP%'")" 0 "the statement still runs"
echo "statement_timeout: ok"

# SIGTERM reaches a statement the run is blocked in (no statement_timeout):
# KILL QUERY, exit 3 (stopped), within seconds.
cat > slow2.yaml <<'EOF'
job: slow2
connections:
  app: {url: "${env.APP}", statement_timeout: 0}
steps:
  - name: s
    sql: {connection: app, script: "SELECT SLEEP(60)"}
EOF
"$NS" run slow2.yaml > slow2.out 2> slow2.err & pid=$!
for _ in $(seq 100); do
    [ "$(my_sql mysql -e "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(60)%'")" = 1 ] && break
    sleep 0.1
done
start=$(date +%s)
kill -TERM $pid
rc=0; wait $pid || rc=$?
assert_eq "$rc" 3 "exit status of a run stopped by SIGTERM"
[ $(($(date +%s) - start)) -lt 10 ] || fail "SIGTERM did not reach the statement"
assert_eq "$(my_sql mysql -e "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(60)%'")" 0 "the statement still runs"
echo "SIGTERM: ok"

# --- no file of this machine is ever sent: a LOAD DATA LOCAL of a sql step
# (the same request a hostile server could make in answer to anything) gets
# an error, and the table stays empty.
echo "secret-line" > "$T/local.txt"
cat > local.yaml <<EOF
job: local
connections:
  app: "\${env.APP}"
steps:
  - name: s
    sql:
      connection: app
      script: |
        CREATE TABLE IF NOT EXISTS f (line varchar(100));
        LOAD DATA LOCAL INFILE '$T/local.txt' INTO TABLE f
EOF
expect_exit 1 "$NS" run local.yaml
expect_err "nightshift sends no file"
assert_eq "$(my_sql ns_app -e "SELECT count(*) FROM f" 2> /dev/null || echo 0)" 0 "rows read from a local file"
echo "no local file: ok"

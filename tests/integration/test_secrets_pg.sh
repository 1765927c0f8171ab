#!/usr/bin/env bash
# No secret reaches a message, a log, the repository or an output file
# (issue 8). A PostgreSQL server of the test's own checks passwords on
# 127.0.0.1; distinctive secrets are planted in every URL form (URI userinfo,
# ?password=, keyword form, ${env.X} in user, password, port and host, the
# repository's URL) and every error path is provoked: bad table, bad column,
# refused connection, bad credentials, malformed URLs, the server gone
# mid-load, an assertion failure, a compare with a dead side, a file export
# whose checkpoint the repository's database keeps. Then stdout,
# stderr, both repositories, the target's checkpoint table and every file
# the runs wrote are searched: no secret may appear.
. "$(dirname "$0")/lib.sh"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pgstate=$T/pgstate
(cd / && NS_PG_TCP=1 NS_PG_PORT=$port bash "$NS_SRC/tests/pg/pg-ctl.sh" start "$pgstate" >/dev/null) ||
    fail "cannot start the password-checking PostgreSQL server"
trap 'cd /; bash "$NS_SRC/tests/pg/pg-ctl.sh" stop "$pgstate" >/dev/null 2>&1; cleanup' EXIT
admin=$(cat "$pgstate/url")
unset PGPASSWORD PGPASSFILE PGUSER PGHOST PGPORT PGDATABASE
export PGPASSFILE=$T/no-such-pgpass

psql "$admin" -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || fail "server setup"
CREATE USER app PASSWORD 'CorrectHorse7!';
CREATE USER rep PASSWORD 'RepoSecret12!';
CREATE DATABASE db OWNER app;
CREATE DATABASE repo OWNER rep;
SQL
dbadmin=${admin/postgresql:\/\/\/postgres/postgresql:///db}
psql "$dbadmin" -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || fail "table setup"
SET ROLE app;
CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL CHECK (v <> 'bad'));
CREATE TABLE slow (id integer PRIMARY KEY, v text);
CREATE FUNCTION nap() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$;
CREATE TRIGGER nap BEFORE INSERT ON slow FOR EACH ROW EXECUTE FUNCTION nap();
SQL

# Every secret planted below; none may be found in any output.
secrets=(CorrectHorse7 WrongLiteralPw8 TOPSECRET 'TOP%ZZ' KeywordSecret11 RepoSecret12
         RepoWrong13 QuerySecret14)
good="postgresql://app:CorrectHorse7%21@127.0.0.1:$port/db"

mkdir -p jobs work out
cd work
printf 'id,v\n1,a\n2,b\n3,bad\n4,x,extra\n' > in.csv
printf 'id,nope\n1,a\n' > badcol.csv
python3 -c "
print('id,v')
for i in range(1, 41): print(f'{i},v{i}')" > slow.csv

# job NAME URL [TABLE] [EXTRA STEP LINES]: a one-step load job.
job() {
    local name=$1 url=$2 table=${3:-t}
    shift 3 || shift $#
    {
        echo "job: $name"
        echo "params:"
        echo "  file: {type: string, required: true}"
        echo "connections:"
        echo "  target: \"$url\""
        echo "steps:"
        echo "  - name: load"
        echo "    chunk: 1"
        echo "    reader: {csv: {path: \"\${params.file}\"}}"
        echo "    writer: {table: {connection: target, name: $table}}"
        echo "    skip: {limit: 10}"
        for extra in "$@"; do echo "    $extra"; done
    } > "../jobs/$name.yaml"
}
n=0
# run_ns ARGS...: runs nightshift, keeps its stdout and stderr in out/.
run_ns() {
    n=$((n + 1))
    "$NS" "$@" > "../out/$n.out" 2> "../out/$n.err" || true
}

# Bad table, bad column, rejected rows: a literal password in the job file.
job literal-bad-table "$good" nosuch
run_ns run ../jobs/literal-bad-table.yaml file=in.csv
job literal-rejects "$good" t
run_ns run ../jobs/literal-rejects.yaml file=in.csv
grep -q 'NS_FIELD_COUNT' rejects/literal-rejects-*-load.csv || fail "the rejects job wrote no rejects"
job query-bad-column "postgresql://app@127.0.0.1:$port/db?password=CorrectHorse7%21" t
run_ns run ../jobs/query-bad-column.yaml file=badcol.csv
job query-secret "postgresql://app@127.0.0.1:$port/db?sslmode=disable&password=QuerySecret14" t
run_ns run ../jobs/query-secret.yaml file=in.csv
# Refused connection and bad credentials.
job refused "postgresql://app:WrongLiteralPw8@127.0.0.1:$dead/db" t
run_ns run ../jobs/refused.yaml file=in.csv
job badpass "postgresql://app:WrongLiteralPw8@127.0.0.1:$port/db" t
# A connection never made is not "lost" (issue 21): a wrong password, a
# database that does not exist, a host that does not resolve, a refused
# port fail at once, as psql does: one attempt, one FAILED execution, the
# server's words, no retry.
never_connected() { # NAME WORDS [MAX_SECONDS]
    local t0 t1 max=${3:-3}
    t0=$(date +%s.%N)
    run_ns run "../jobs/$1.yaml" file=in.csv
    t1=$(date +%s.%N)
    grep -q "$2" "../out/$n.err" || fail "$1: $(cat "../out/$n.err")"
    grep -q "retry" "../out/$n.err" && fail "$1 was retried: $(cat "../out/$n.err")"
    grep -q "connection lost" "../out/$n.err" && fail "$1 was called a lost connection: $(cat "../out/$n.err")"
    python3 -c "import sys; sys.exit(float(sys.argv[2]) - float(sys.argv[1]) > $max)" "$t0" "$t1" ||
        fail "$1 took $(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1") s"
}
never_connected badpass "password authentication failed"
assert_eq "$(sql "$T/repo.db" "SELECT count(*) || ' ' || group_concat(e.status) FROM ns_job_execution e JOIN ns_job_instance i ON i.id = e.instance_id WHERE i.job_name = 'badpass'")" "1 FAILED" \
    "a wrong password: one FAILED execution"
job nodb "postgresql://app:CorrectHorse7%21@127.0.0.1:$port/no_such_db" t
never_connected nodb 'database "no_such_db" does not exist'
job nohost "postgresql://app:CorrectHorse7%21@no-such-host.invalid:$port/db" t
# (a name lookup takes what the resolver takes: not ours to bound)
never_connected nohost "could not translate host name" 60
job refused2 "postgresql://app:CorrectHorse7%21@127.0.0.1:$dead/db" t
never_connected refused2 "Connection refused"
# ${env.X} in every part of the URL, malformed or wrong.
job envurl 'postgresql://${env.NSU}:${env.NSPW}@${env.NSH}:${env.NSP}/db' t
NSU=app NSPW='TOP%ZZSECRET2' NSH=127.0.0.1 NSP=$port run_ns run ../jobs/envurl.yaml file=in.csv
NSU=app NSPW='CorrectHorse7%21' NSH=127.0.0.1 NSP=TOPSECRET3 run_ns run ../jobs/envurl.yaml file=in.csv
NSU=app NSPW='CorrectHorse7%21' NSH=TOPSECRETHOST5 NSP=$port run_ns run ../jobs/envurl.yaml file=in.csv
NSU=TOPSECRETUSER6 NSPW='CorrectHorse7%21' NSH=127.0.0.1 NSP=$port run_ns run ../jobs/envurl.yaml file=in.csv
NSU=app NSPW='TOPSECRETPW7' NSH=127.0.0.1 NSP=$port run_ns run ../jobs/envurl.yaml file=in.csv
# A whole URL from the environment, keyword form (libpq's host=... dbname=...):
# taken like a URL (issue 21), and its password redacted when it is wrong.
job envwhole '${env.NSURL}' t
NSURL="host=127.0.0.1 port=$port user=app password=KeywordSecret11 dbname=db" \
    run_ns run ../jobs/envwhole.yaml file=in.csv
grep -q 'password authentication failed' "../out/$n.err" ||
    fail "a keyword/value connection string was not tried: $(cat "../out/$n.err")"
# A literal keyword string with the right password loads; a quoted wrong one
# is refused without quoting it; an unknown form is refused without the
# password in the message.
job keyword "host=127.0.0.1 port=$port user=app password='CorrectHorse7!' dbname=db" t "rejects: kw.csv"
run_ns run ../jobs/keyword.yaml file=in.csv
grep -q 'COMPLETED' "../out/$n.out" "../out/$n.err" || fail "a keyword/value target: $(cat "../out/$n.err")"
job keyword-wrong "host=127.0.0.1 port=$port user=app password='KeywordSecret11 x' dbname=db" t
run_ns run ../jobs/keyword-wrong.yaml file=in.csv
grep -q 'password authentication failed' "../out/$n.err" || fail "keyword-wrong: $(cat "../out/$n.err")"
job unknown-form "oracle://app:TOPSECRET4@127.0.0.1:$port/db" t
run_ns validate ../jobs/unknown-form.yaml
grep -q "unsupported URL 'oracle://app:\*\*\*@127.0.0.1" "../out/$n.err" || fail "unknown-form: $(cat "../out/$n.err")"
NSURL="postgresql://app:TOP%ZZSECRET8@127.0.0.1:$port/db" run_ns run ../jobs/envwhole.yaml file=in.csv

# The server gone mid-load: its backends terminated while chunks commit.
# Without retries the load fails; with them (the default) each retry's
# notice quotes the failure: neither says a secret.
terminate_mid_load() { # terminate_mid_load NAME
    "$NS" run "../jobs/$1.yaml" file=slow.csv > "../out/$1.out" 2> "../out/$1.err" &
    pid=$!
    for _ in $(seq 1 100); do
        [ "$(psql "$dbadmin" -qAtX -c "SELECT count(*) FROM slow")" -ge 2 ] && break
        sleep 0.1
    done
    psql "$dbadmin" -qAtX -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'" >/dev/null
}
job gone "$good" slow "retry: {limit: 0}"
terminate_mid_load gone
wait $pid && fail "the load survived its server's backend being terminated" || true
grep -q 'FAILED' ../out/gone.out ../out/gone.err || fail "the interrupted load did not fail"
psql "$dbadmin" -qAtX -c "TRUNCATE slow" -c "DROP TABLE IF EXISTS nightshift_checkpoint" >/dev/null
job retried "$good" slow "retry: {backoff: {initial: 100ms}}"
terminate_mid_load retried
wait $pid || { cat ../out/retried.err >&2; fail "the load did not survive a terminated backend"; }
grep -q 'retry 1 of 3' ../out/retried.err || fail "no retry was said"

# An assertion that fails, and a compare whose right side is dead.
cat > ../jobs/checks.yaml <<EOF
job: checks
connections:
  left: "$good"
  right: "postgresql://app:WrongLiteralPw8@127.0.0.1:$dead/db"
steps:
  - name: check
    assert: {connection: left, sql: "SELECT id, v FROM t"}
    on: {ASSERT_FAILED: cmp}
  - name: cmp
    compare:
      left: {connection: left, query: "SELECT id, v FROM t"}
      right: {connection: right, query: "SELECT id, v FROM t"}
      key: [id]
      output: "diff-\${execution.id}.csv"
EOF
run_ns run ../jobs/checks.yaml
cp ../out/$n.out ../out/checks.out; cp ../out/$n.err ../out/checks.err

# A PostgreSQL repository with a password: a run that fails, list, show,
# stop and restart of unknown ids, and a wrong repository password.
repo="postgresql://rep:RepoSecret12%21@127.0.0.1:$port/repo"
run_ns run ../jobs/literal-bad-table.yaml file=in.csv --repository "$repo"
run_ns list --json --repository "$repo"
run_ns show 1 --json --repository "$repo"
run_ns show 1 --repository "$repo"
run_ns restart 999 --repository "$repo"
run_ns stop 999 --repository "$repo"
run_ns list --repository "postgresql://rep:RepoWrong13@127.0.0.1:$port/repo"
run_ns list --repository "postgresql://rep:TOP%ZZSECRET9@127.0.0.1:$port/repo"
psql "$admin" -qAtX -c "ALTER USER rep PASSWORD 'RepoSecret12!'" >/dev/null

# The same repository as a keyword/value string: taken, its password never said.
krepo="host=127.0.0.1 port=$port user=rep password=RepoSecret12! dbname=repo"
run_ns list --json --repository "$krepo"
grep -q '"job"' "../out/$n.out" || fail "a keyword/value repository: $(cat "../out/$n.err")"
run_ns list --repository "host=127.0.0.1 port=$port user=rep password=RepoWrong13 dbname=repo"
grep -q 'password authentication failed' "../out/$n.err" || fail "a wrong keyword/value repository password: $(cat "../out/$n.err")"
run_ns list --repository "host=127.0.0.1 port=$port user=rep password='RepoWrong13 quoted' dbname=repo"

# The scheduler with a password in its repository URL (from the
# environment): no process's command line carries it while its runs go
# (issue 21: every local user reads /proc/*/cmdline).
cat > ../jobs/ticking.yaml <<EOF
job: ticking
connections:
  db: "$good"
steps:
  - name: s
    sql: {connection: db, script: "SELECT pg_sleep(0.4)"}
schedule:
  cron: "* * * * *"
  overlap: allow
EOF
CLOCK="$(date -u -d 2024-03-09T00:00:30Z +%s) 240 $(date +%s.%N)"
NIGHTSHIFT_REPOSITORY="$repo" NIGHTSHIFT_TEST_CLOCK=$CLOCK "$NS" scheduler ../jobs/ticking.yaml \
    > ../out/scheduler.out 2> ../out/scheduler.err &
spid=$!
seen=0
for _ in $(seq 60); do
    for f in /proc/[0-9]*/cmdline; do
        line=$( (tr '\0' ' ' < "$f") 2>/dev/null) || continue
        case $line in
        *RepoSecret12*) fail "a command line carries the repository's password: $line" ;;
        *"run ../jobs/ticking.yaml --tick"*) seen=$((seen + 1)) ;;
        esac
    done
    sleep 0.1
done
kill -TERM "$spid"
wait "$spid" || fail "the scheduler exited $? after SIGTERM"
[ "$seen" -ge 3 ] || fail "the scan saw only $seen scheduled runs: $(tail ../out/scheduler.err)"
runs=$(psql "${admin/postgresql:\/\/\/postgres/postgresql:///repo}" -qAtX -c \
    "SELECT count(*) FROM nightshift.ns_job_execution e JOIN nightshift.ns_job_instance i ON i.id = e.instance_id WHERE i.job_name = 'ticking' AND e.status = 'COMPLETED'")
[ "$runs" -ge 3 ] || fail "the scheduled runs did not complete ($runs): $(tail ../out/scheduler.err; "$NS" list --repository "$repo")"

# A file writer with that repository: its checkpoint is kept in the
# repository's database (a connection the job file never names). Killed
# before its second commit, then restarted; and once with the wrong password.
cat > ../jobs/export.yaml <<EOF
job: export
connections:
  db: "$good"
steps:
  - name: export
    chunk: 1
    reader: {query: {connection: db, sql: "SELECT id, v FROM t", key: [id]}}
    writer: {file: {path: "export-\${execution.id}.csv"}}
EOF
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=2 run_ns run ../jobs/export.yaml --repository "$repo"
run_ns run ../jobs/export.yaml --repository "$repo"
grep -q 'resuming after chunk 1' "../out/$n.err" || fail "the export did not resume: $(cat "../out/$n.err")"
[ "$(cat export-*.csv | wc -l)" == 3 ] || fail "the export wrote $(cat export-*.csv | wc -l) lines, want 3"
run_ns run ../jobs/export.yaml --repository "postgresql://rep:RepoWrong13@127.0.0.1:$port/repo"

# What the SQLite repository shows.
run_ns list --json --limit 100
for id in $(seq 1 30); do run_ns show "$id" --json; run_ns show "$id"; done

# Every text nightshift produced, searched for every secret.
sqlite3 "$T/repo.db" .dump > ../out/sqlite-repo.dump
psql "${admin/postgresql:\/\/\/postgres/postgresql:///repo}" -qAtX \
    -c "SELECT * FROM nightshift.ns_job_execution" \
    -c "SELECT * FROM nightshift.ns_step_execution" \
    -c "SELECT * FROM nightshift.ns_execution_context" -c "SELECT * FROM nightshift_checkpoint" \
    > ../out/pg-repo.dump
psql "$dbadmin" -qAtX -c "SELECT * FROM nightshift_checkpoint" > ../out/checkpoints.dump
grep -q 'does not exist' ../out/* || fail "the bad-table error was not provoked"
grep -q 'password authentication failed' ../out/* || fail "bad credentials were not provoked"
grep -q 'Connection refused' ../out/* || fail "a refused connection was not provoked"
grep -qi 'percent-encoded' ../out/* || fail "a malformed URL was not provoked"
grep -q 'ASSERT_FAILED' ../out/* || fail "the assertion failure was not provoked"
grep -q '\*\*\*' ../out/* || fail "no redaction happened at all: the test provoked nothing"
for s in "${secrets[@]}"; do
    if grep -rlF -- "$s" ../out . >/dev/null; then
        grep -rnF -- "$s" ../out . | head -5 >&2
        fail "secret '$s' was written"
    fi
done
echo "ok: $n commands and every error path, no secret in any output"

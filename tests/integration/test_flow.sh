#!/usr/bin/env bash
# sql:, assert: and rebuild: steps and the on: flow, on SQLite (or on
# PostgreSQL when run by test_flow_pg.sh): an assertion that passes
# lets "publish" run and one that fails stops it (exit code ASSERT_FAILED);
# a branch on ASSERT_FAILED; a branched flow that fails, is fixed and is
# restarted without running completed steps again; an SQL step killed after
# its commit is not applied twice; parameters are bound, never pasted;
# stop ends the job and a restart goes on after it; bad flows are refused.
source "$(dirname "$0")/lib.sh"
export FLOW_URL="sqlite:$T/t.db"
[ -n "${FLOW_PG:-}" ] && FLOW_URL=$(pg_db ns_flow)
q() { db_sql "$FLOW_URL" "$1"; }
setup() {
    q "DROP TABLE IF EXISTS users" >/dev/null 2>&1 || true
    q "DROP TABLE IF EXISTS meta" >/dev/null 2>&1 || true
    q "DROP TABLE IF EXISTS agg" >/dev/null 2>&1 || true
    q "DROP TABLE IF EXISTS nightshift_checkpoint" >/dev/null 2>&1 || true
    q "CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL, age integer)"
    q "CREATE TABLE meta (version integer NOT NULL, note text)"
    q "INSERT INTO meta VALUES (1, NULL)"
    q "CREATE TABLE agg (age integer PRIMARY KEY, n integer NOT NULL, note text DEFAULT 'built')"
    rm -f "$T/repo.db"
}
flow() { # flow FILE CHECK-ON SUMMARY-TABLE
    cat > "$1" <<EOF
job: ${1%.yaml}
params:
  file: {type: string, required: true}
  minage: {type: int, default: 18}
  note: {type: string, default: "O'Brien; DROP TABLE users; --"}
connections:
  t: "\${env.FLOW_URL}"
steps:
  - name: load
    reader: {csv: {path: "\${params.file}"}}
    writer: {table: {connection: t, name: users}}
  - name: check
    assert:
      connection: t
      sql: "SELECT id, email FROM users WHERE email NOT LIKE '%@%' AND age >= :minage ORDER BY id"
    ${2:+on: $2}
  - name: publish
    sql: {connection: t, script: "UPDATE meta SET version = version + 1; UPDATE meta SET note = :note"}
    on: {"*": end}
  - name: quarantine
    sql: {connection: t, script: "DELETE FROM users WHERE email NOT LIKE '%@%'"}
  - name: summary
    rebuild:
      connection: t
      table: ${3:-agg}
      sql: "SELECT age, count(*) AS n FROM users WHERE age >= :minage GROUP BY age"
EOF
}
printf 'id,email,age\n1,a@x,20\n2,b@x,30\n3,c@x,20\n' > good.csv
printf 'id,email,age\n1,a@x,20\n2,bx,30\n3,cx,40\n4,d@x,17\n' > bad.csv

# An assertion that passes: publish runs, its ; and quotes bound as data.
setup
flow plain.yaml
expect_exit 0 "$NS" run plain.yaml file=good.csv
assert_eq "$(q "SELECT version, note FROM meta")" "2|O'Brien; DROP TABLE users; --" "published"
assert_eq "$(q "SELECT count(*) FROM users")" 3 "users (the note was not pasted into SQL)"
assert_eq "$(show_field 1 "['exit_code']")" COMPLETED "job exit code"
assert_eq "$(show_eval 1 "[s['name'] for s in d['steps']]")" "['load', 'check', 'publish']" "steps run"
assert_eq "$(show_field 1 "['steps'][2]['write_count']")" 2 "rows the script changed"

# An assertion that fails: the job fails with its exit code, publish never runs.
setup
expect_exit 1 "$NS" run plain.yaml file=bad.csv
expect_err "step check: assertion failed: 2 rows, e.g. (id=2, email=bx), (id=3, email=cx)"
assert_eq "$(show_field 1 "['exit_code']")" ASSERT_FAILED "job exit code"
assert_eq "$(show_field 1 "['steps'][1]['exit_code']")" ASSERT_FAILED "step exit code"
assert_eq "$(q "SELECT version FROM meta")" 1 "nothing published"

# A branch: ASSERT_FAILED -> quarantine -> summary (rebuild); a summary that
# fails (no such table), then fixed, restarted: completed steps are not run
# again, the failed one is, and the flow goes on as recorded.
setup
flow branch.yaml "{ASSERT_FAILED: quarantine}" agg_missing
expect_exit 1 "$NS" run branch.yaml file=bad.csv
assert_eq "$(show_eval 1 "[(s['name'], s['status']) for s in d['steps']]")" \
    "[('load', 'COMPLETED'), ('check', 'FAILED'), ('quarantine', 'COMPLETED'), ('summary', 'FAILED')]" \
    "the branched flow"
assert_eq "$(q "SELECT count(*) FROM users")" 2 "users after quarantine"
sed -i 's/table: agg_missing/table: agg/' branch.yaml
expect_exit 0 "$NS" restart 1
expect_err "step load: already completed for this instance (COMPLETED); not run again"
assert_eq "$(show_eval 2 "[s['name'] for s in d['steps']]")" "['check', 'publish']" \
    "steps run by the restart (check passes now that the bad rows are gone)"
assert_eq "$(q "SELECT version FROM meta")" 2 "published by the restart"

# Rebuild: the table's rows replaced in one transaction, defaults kept.
setup
flow rebuild.yaml "{ASSERT_FAILED: quarantine, COMPLETED: summary}"
q "INSERT INTO agg VALUES (99, 1, 'stale')"
expect_exit 0 "$NS" run rebuild.yaml file=good.csv
assert_eq "$(q "SELECT age, n, note FROM agg ORDER BY age")" "20|2|built
30|1|built" "rebuilt table"
expect_err "step summary: agg rebuilt with 2 rows"

# An SQL step that dies right after its commit is recorded as completed on
# restart, not applied again.
setup
cat > once.yaml <<'EOF'
job: once
connections:
  t: "${env.FLOW_URL}"
steps:
  - name: bump
    sql: {connection: t, script: "UPDATE meta SET version = version + 10"}
EOF
NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=1 expect_exit 99 "$NS" run once.yaml
expect_exit 0 "$NS" restart 1
expect_err "step bump: already committed in the target; recorded as completed"
assert_eq "$(q "SELECT version FROM meta")" 11 "version after a crash and a restart"

# stop: the job stops after check; a restart goes on with publish.
setup
flow stop.yaml "{COMPLETED: stop}"
expect_exit 3 "$NS" run stop.yaml file=good.csv
assert_eq "$(q "SELECT version FROM meta")" 1 "nothing published before the stop"
expect_exit 0 "$NS" restart 1
assert_eq "$(q "SELECT version FROM meta")" 2 "published after the restart"

# A failing script: the step fails naming its statement; nothing is kept.
setup
cat > badsql.yaml <<'EOF'
job: badsql
connections:
  t: "${env.FLOW_URL}"
steps:
  - name: two
    sql: {connection: t, script: "UPDATE meta SET version = 5; UPDATE nosuchtable SET x = 1"}
EOF
expect_exit 1 "$NS" run badsql.yaml
expect_err "statement 2"
assert_eq "$(q "SELECT version FROM meta")" 1 "the first statement was rolled back"

# Bad flows are refused before anything runs.
bad() { # bad DESCRIPTION STEPS-YAML EXPECTED-ERROR
    printf 'job: bad\nconnections:\n  t: "sqlite:x.db"\nsteps:\n%s\n' "$2" > bad.yaml
    expect_exit 2 "$NS" validate bad.yaml
    expect_err "$3"
}
bad "unknown target" '  - {name: a, sql: {connection: t, script: "SELECT 1"}, on: {COMPLETED: nowhere}}' \
    "steps[0].on.COMPLETED: no step named 'nowhere'"
bad "loop" '  - {name: a, sql: {connection: t, script: "SELECT 1"}}
  - {name: b, sql: {connection: t, script: "SELECT 1"}, on: {COMPLETED: a}}' \
    "the flow can lead from step 'b' back to step 'a'; flows may not loop"
bad "exit code" '  - {name: a, sql: {connection: t, script: "SELECT 1"}, on: {COMPLETE: end}}' \
    "steps[0].on.COMPLETE: not an exit code"
bad "two queries" '  - {name: a, assert: {connection: t, sql: "SELECT 1; SELECT 2"}}' \
    "steps[0].assert.sql: must be one query"
bad "undeclared parameter" '  - {name: a, assert: {connection: t, sql: "SELECT :x"}}' \
    ":x is not a declared parameter"
bad "two kinds" '  - {name: a, assert: {connection: t, sql: "SELECT 1"}, sql: {connection: t, script: "x"}}' \
    "must do exactly one thing"
bad "chunk key" '  - {name: a, sql: {connection: t, script: "SELECT 1"}, chunk: 5}' \
    "steps[0].chunk: only for reader/writer steps"
bad "reserved name" '  - {name: end, sql: {connection: t, script: "SELECT 1"}}' \
    "'end' names a flow outcome"
echo "flow: ok ($FLOW_URL)"

#!/usr/bin/env bash
# Exactly-once under kill -9 (docs/internals.md, "Exactly-once restart"): a load is killed at 25
# random moments, relaunched each time, and must end with every good row
# exactly once and every bad row exactly once in the rejects files. Variants
# ($KILL9_VARIANTS): the target is its own database (checkpoint row in the
# target), the target is the repository's database (one transaction for
# both: the repository's counters equal the target's rows at every kill), and
# PostgreSQL as repository, target, or both (run by test_kill9_pg.sh), and
# MariaDB as the target (test_kill9_mysql.sh).
source "$(dirname "$0")/lib.sh"
SEED=${NS_TEST_SEED:-$(($(date +%s) % 100000))}
echo "kill delays: seed $SEED (the same delays again: NS_TEST_SEED=$SEED)"
ROWS=700000
python3 - > in.csv <<PY
print("id,v")
for i in range(1, $ROWS + 1):
    print(f"{i},{'bad' if i % 500 == 0 else 'v' + str(i)}")
PY
load_job job.yaml crash k "skip: {limit: 100000}" 'rejects: "${env.REJECTS}/${execution.id}.csv"'
load_job other-instance.yaml crash k_other 'rejects: "${env.REJECTS}-other/${execution.id}.csv"'
load_job other-job.yaml crash-other k_other

target_sql() { db_sql "$TARGET_DB" "$1"; }
repo_sql() { # a query on the repository's table $1 (schema-qualified on PostgreSQL);
    # nothing while a run killed early has not created the repository's tables
    local table=$1
    [[ $NIGHTSHIFT_REPOSITORY == postgresql:* ]] && table=nightshift.$1
    db_sql "$NIGHTSHIFT_REPOSITORY" "${2//TABLE/$table}" 2>/dev/null || true
}
repo_written() { # rows the repository says were written, over all executions
    local n
    n=$(repo_sql ns_step_execution "SELECT coalesce(sum(write_count), 0) FROM TABLE")
    echo "${n:-0}"
}
# The committed line of the main instance's checkpoint in the target (its
# row is the one of job crash whose key was not there before the loop).
# A checkpoint another repository wrote counts as nothing committed yet.
committed_line() {
    local ctx repo
    ctx=$(target_sql "SELECT context FROM nightshift_checkpoint WHERE job_name = 'crash'
        AND job_key NOT IN ($others)" 2>/dev/null || true)
    repo=$(repo_sql ns_repository "SELECT id FROM TABLE")
    python3 -c "
import json, sys
c = json.loads(sys.argv[1]) if sys.argv[1].strip() else {}
print(c['position']['line'] if c.get('repository') == sys.argv[2] else 2)" "$ctx" "$repo"
}
# After every run, killed or not: the rejects of the committed part of the
# input are exactly its bad lines, each once, across all the files (lines
# past the checkpoint may be there: the next run cuts them back).
check_rejects() { # check_rejects NAME WHEN
    local upto
    upto=$(committed_line)
    python3 - "$REJECTS" "$upto" "$1: $2" <<'PY' || exit 1
import glob, sys
folder, upto, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
got = []
for f in sorted(glob.glob(folder + "/*.csv")):
    for row in open(f):
        if row.startswith("line,"):
            continue
        line = int(row.split(",", 1)[0])
        if line < upto:
            got.append(line)
want = list(range(501, upto, 500))
if sorted(got) != want:
    extra = sorted(set(got) - set(want)) or sorted(l for l in got if got.count(l) > 1)
    print(f"FAIL: {what}: the rejects of lines before {upto} are {len(got)} lines, want "
          f"{len(want)} (missing {sorted(set(want) - set(got))[:5]}, extra {extra[:5]})",
          file=sys.stderr)
    sys.exit(1)
PY
}
variant() { # variant NAME TARGET (file or URL) REPOSITORY_URL [EARLIER_REPOSITORY_URL]
    export TARGET_DB="$2" NIGHTSHIFT_REPOSITORY="$3" REJECTS="$T/rejects-$1" TARGET_URL="$2"
    [[ $2 == postgresql:* || $2 == mysql:* ]] || TARGET_URL="sqlite:$2"
    # No primary key: a duplicated row would show, not be refused.
    target_sql "CREATE TABLE k (id INTEGER NOT NULL, v TEXT CHECK (v <> 'bad'))"
    # The target holds other jobs' checkpoints, and another instance's of
    # this job (issue 8: once, rejects went missing on such a target).
    target_sql "CREATE TABLE k_other (id INTEGER NOT NULL, v TEXT)"
    csv_rows 1 300 > other.csv
    expect_exit 0 "$NS" run other-instance.yaml file=other.csv how=other
    expect_exit 0 "$NS" run other-job.yaml file=other.csv
    others=$(target_sql "SELECT job_key FROM nightshift_checkpoint WHERE job_name = 'crash'" |
        sed "s/.*/'&'/" | paste -sd, -)
    [ -n "$others" ] || fail "$1: no other checkpoint of job crash in the target"
    local flag=() refusals=0 before
    local -A orphans=() # executions a kill left marked as running
    if [ -n "${4:-}" ]; then
        # The same load recorded in another repository, then the table
        # recreated: the target's checkpoint is stale, and every launch of
        # this repository must refuse it unless told to start over (issue 8:
        # a run killed before its first commit made the next one trust it,
        # and load nothing).
        NIGHTSHIFT_REPOSITORY="$4" REJECTS="$T/rejects-$1-earlier" expect_exit 0 "$NS" run job.yaml file=in.csv
        target_sql "DROP TABLE k"
        target_sql "CREATE TABLE k (id INTEGER NOT NULL, v TEXT CHECK (v <> 'bad'))"
        # The issue's sequence: told to start over, killed before its first
        # commit; the loop's first launch must refuse the checkpoint again.
        expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=1 "$NS" run job.yaml file=in.csv --ignore-checkpoint
        orphans[$(repo_sql ns_job_execution "SELECT max(id) FROM TABLE")]=1
    fi
    local kills=0 rc done=0 elapsed=0 maxd=0.15 d committed orphan
    local base_written # rows the other jobs' runs recorded
    base_written=$(repo_written)
    for i in $(seq 1 40); do
        d=$(python3 -c "import random; random.seed($SEED * 1000 + $i); print(round(random.uniform(0.01, $maxd), 3))")
        before=$(target_sql "SELECT count(*) FROM k")
        "$NS" run job.yaml file=in.csv "${flag[@]}" > /dev/null 2> "run-$1-$i.log" & pid=$!
        sleep "$d"
        kill -9 $pid 2>/dev/null && kills=$((kills + 1))
        rc=0; { wait $pid; } 2>/dev/null || rc=$?
        cat "run-$1-$i.log" >> "run-$1.log"
        check_rejects "$1" "after run $i"
        if [ $rc == 0 ]; then done=1; break; fi
        flag=()
        if [ $rc == 1 ] && grep -q "of another repository" "run-$1-$i.log"; then
            refusals=$((refusals + 1)) flag=(--ignore-checkpoint)
            assert_eq "$(target_sql "SELECT count(*) FROM k")" "$before" "$1: rows written by a refused run"
        fi
        # A kill before the launch committed its execution leaves nothing to
        # recover; one after leaves it running in the repository, and the
        # next launch must mark it FAILED (counted below).
        orphan=$(repo_sql ns_job_execution \
            "SELECT id FROM TABLE WHERE status IN ('STARTING', 'STARTED', 'STOPPING')")
        [ -n "$orphan" ] && orphans[$orphan]=1
        [ $kills -ge 25 ] && break
        # Aim at about 1/40 of the input per kill, whatever this machine's speed.
        elapsed=$(python3 -c "print($elapsed + $d)")
        committed=$(target_sql "SELECT count(*) FROM k")
        # One transaction for rows and record: the repository never lags.
        if [[ $1 == *shared ]]; then
            assert_eq "$(($(repo_written) - base_written))" "$committed" \
                "$1: rows the repository recorded at kill $kills"
        fi
        if [ "$i" -ge 3 ] && [ "$committed" -gt 0 ]; then
            maxd=$(python3 -c "print(round(min(0.5, max(0.03, 2 * $elapsed * $ROWS / 40 / $committed)), 3))")
        fi
    done
    [ $kills -ge 20 ] || fail "$1: only $kills kills landed before the load finished; enlarge ROWS"
    echo "$1: after $kills kills, $(target_sql "SELECT count(*) FROM k") of $ROWS rows were committed"
    if [ $done == 0 ]; then
        rc=0
        "$NS" run job.yaml file=in.csv "${flag[@]}" > /dev/null 2> "run-$1-last.log" || rc=$?
        if [ $rc == 1 ] && grep -q "of another repository" "run-$1-last.log"; then
            refusals=$((refusals + 1))
            expect_exit 0 "$NS" run job.yaml file=in.csv --ignore-checkpoint
        elif [ $rc != 0 ]; then
            cat "run-$1-last.log" >&2
            fail "$1: the last run exited $rc"
        fi
    fi
    if [ -n "${4:-}" ]; then
        [ $refusals -ge 1 ] || fail "$1: the stale checkpoint was never refused"
        echo "$1: the stale checkpoint was refused $refusals times"
    fi
    local count distinct
    count=$(target_sql "SELECT count(*) FROM k")
    distinct=$(target_sql "SELECT count(DISTINCT id) FROM k")
    assert_eq "$count" "$distinct" "$1: duplicated rows"
    assert_eq "$count" $((ROWS - ROWS / 500)) "$1: rows loaded"
    # Every bad row once, across all executions' rejects files.
    cat "$REJECTS"/*.csv | grep -v '^line,' | cut -d, -f1 | sort -n > got.txt
    seq 501 500 $((ROWS + 1)) > want.txt
    diff -q want.txt got.txt > /dev/null || fail "$1: rejects differ ($(wc -l < got.txt) lines, want $(wc -l < want.txt))"
    # Every execution a kill left running was found dead and marked FAILED by
    # the next launch, and nothing else was.
    local recovered want
    want=$(printf '%s\n' "${!orphans[@]}" | sort -n | paste -sd, -)
    recovered=$(repo_sql ns_job_execution "SELECT id FROM TABLE WHERE status = 'FAILED'
        AND exit_message LIKE '%marked FAILED when the instance was launched again' ORDER BY id" |
        paste -sd, -)
    [ ${#orphans[@]} -ge 10 ] || fail "$1: only ${#orphans[@]} kills landed after a launch began; enlarge ROWS"
    assert_eq "$recovered" "$want" "$1: executions recovered after a kill"
    [ "$(grep -c "marked FAILED" "run-$1.log" || true)" -ge 1 ] || fail "$1: no recovery was reported"
    echo "$1: $kills kills (${#orphans[@]} of them recovered), $count rows, no loss, no duplicate"
}

for v in ${KILL9_VARIANTS:-separate shared foreign}; do
    case $v in
    separate) variant separate "$T/target.db" "sqlite:$T/repo.db" ;;
    foreign) variant foreign "$T/target-f.db" "sqlite:$T/repo-fb.db" "sqlite:$T/repo-fa.db" ;;
    pg-foreign) variant pg-foreign "$(pg_db ns_kill9_foreign)" "sqlite:$T/repo-pgfb.db" "sqlite:$T/repo-pgfa.db" ;;
    shared) variant shared "$T/both.db" "sqlite:$T/both.db" ;;
    pg-repository) variant pg-repository "$T/target-pg.db" "$(pg_db ns_kill9)" ;;
    pg-target) variant pg-target "$(pg_db ns_kill9_target)" "sqlite:$T/repo-pg.db" ;;
    pg-shared) url=$(pg_db ns_kill9_shared); variant pg-shared "$url" "$url" ;;
    mysql-target) variant mysql-target "$(my_db ns_kill9_target)" "sqlite:$T/repo-my.db" ;;
    esac
done

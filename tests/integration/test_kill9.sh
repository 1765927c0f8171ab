#!/usr/bin/env bash
# Exactly-once under kill -9 (ARCHITECTURE.md §7): a load is killed at 25
# random moments, relaunched each time, and must end with every good row
# exactly once and every bad row exactly once in the rejects files. Variants
# ($KILL9_VARIANTS): the target is its own database (checkpoint row in the
# target), the target is the repository's database (one transaction for
# both: the repository's counters equal the target's rows at every kill), and
# PostgreSQL as repository, target, or both (run by test_kill9_pg.sh).
source "$(dirname "$0")/lib.sh"
ROWS=700000
python3 - > in.csv <<PY
print("id,v")
for i in range(1, $ROWS + 1):
    print(f"{i},{'bad' if i % 500 == 0 else 'v' + str(i)}")
PY
load_job job.yaml crash k "skip: {limit: 100000}" 'rejects: "${env.REJECTS}/${execution.id}.csv"'

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
variant() { # variant NAME TARGET (file or URL) REPOSITORY_URL
    export TARGET_DB="$2" NIGHTSHIFT_REPOSITORY="$3" REJECTS="$T/rejects-$1" TARGET_URL="$2"
    [[ $2 == postgresql:* ]] || TARGET_URL="sqlite:$2"
    # No primary key: a duplicated row would show, not be refused.
    target_sql "CREATE TABLE k (id INTEGER NOT NULL, v TEXT CHECK (v <> 'bad'))"
    local kills=0 rc done=0 elapsed=0 maxd=0.15 d committed orphan
    local -A orphans=() # executions a kill left marked as running
    for i in $(seq 1 40); do
        d=$(python3 -c "import random; print(round(random.uniform(0.01, $maxd), 3))")
        "$NS" run job.yaml file=in.csv > /dev/null 2>> "run-$1.log" & pid=$!
        sleep "$d"
        kill -9 $pid 2>/dev/null && kills=$((kills + 1))
        rc=0; { wait $pid; } 2>/dev/null || rc=$?
        if [ $rc == 0 ]; then done=1; break; fi
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
            assert_eq "$(repo_written)" "$committed" "$1: rows the repository recorded at kill $kills"
        fi
        if [ "$i" -ge 3 ] && [ "$committed" -gt 0 ]; then
            maxd=$(python3 -c "print(round(min(0.5, max(0.03, 2 * $elapsed * $ROWS / 40 / $committed)), 3))")
        fi
    done
    [ $kills -ge 20 ] || fail "$1: only $kills kills landed before the load finished; enlarge ROWS"
    echo "$1: after $kills kills, $(target_sql "SELECT count(*) FROM k") of $ROWS rows were committed"
    if [ $done == 0 ]; then
        expect_exit 0 "$NS" run job.yaml file=in.csv
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

for v in ${KILL9_VARIANTS:-separate shared}; do
    case $v in
    separate) variant separate "$T/target.db" "sqlite:$T/repo.db" ;;
    shared) variant shared "$T/both.db" "sqlite:$T/both.db" ;;
    pg-repository) variant pg-repository "$T/target-pg.db" "$(pg_db ns_kill9)" ;;
    pg-target) variant pg-target "$(pg_db ns_kill9_target)" "sqlite:$T/repo-pg.db" ;;
    pg-shared) url=$(pg_db ns_kill9_shared); variant pg-shared "$url" "$url" ;;
    esac
done

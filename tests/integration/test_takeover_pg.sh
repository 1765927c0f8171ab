#!/usr/bin/env bash
# The fence (docs/internals.md): a run frozen past its lease is taken over by
# a launch on another host; when the frozen run wakes up it cannot commit its
# next chunk, and every row is in the target exactly once. The repository is
# on PostgreSQL (the several-hosts setup); the target is SQLite, another
# PostgreSQL database, or the repository's own database.
source "$(dirname "$0")/lib.sh"
command -v unshare > /dev/null || fail "unshare (util-linux) is needed to pose as another host"
unshare -u true 2> /dev/null || fail "unshare --uts is not permitted here: the test needs a second host name"
ROWS=5000
csv_rows 1 $ROWS > in.csv
load_job job.yaml takeover k
export NIGHTSHIFT_LEASE=1

state() { awk '{print $3}' "/proc/$1/stat" 2> /dev/null || echo gone; }

freeze() { # freeze NAME FAULT: run A, on host "elsewhere", stops itself at FAULT=3
    env "$2=3" unshare -u sh -c 'hostname elsewhere && exec "$0" "$@"' \
        "$NS" run job.yaml file=in.csv > "a-$1.out" 2> "a-$1.err" &
}

variant() { # variant NAME TARGET_URL REPOSITORY_URL [locked]
    export TARGET_URL=$2 NIGHTSHIFT_REPOSITORY=$3
    if [ "${4:-}" = locked ]; then
        # A freezes with its fourth chunk written but not committed: its
        # transaction holds those keys, and B must insert them too. The
        # server ends A's idle transaction after the lease, or B would wait
        # for it for ever.
        db_sql "$TARGET_URL" "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)"
        freeze "$1" NIGHTSHIFT_TEST_PAUSE_BEFORE_COMMIT
    else
        # No key: a chunk committed twice would show, not be refused. A
        # freezes with its third chunk committed and recorded (heartbeat
        # thread frozen too).
        db_sql "$TARGET_URL" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT)"
        freeze "$1" NIGHTSHIFT_TEST_PAUSE_AFTER_COMMIT
    fi
    local a=$! chunks=3 idle_before
    idle_before=$(grep -c "terminating connection due to idle-in-transaction timeout" "$(pg_log)" || true)
    [ "${4:-}" = locked ] && chunks=2
    for _ in $(seq 200); do
        [ "$(state $a)" = T ] && break
        [ "$(state $a)" = gone ] && { cat "a-$1.err" >&2; fail "$1: run A ended before it froze"; }
        sleep 0.05
    done
    [ "$(state $a)" = T ] || fail "$1: run A never froze"
    assert_eq "$(db_sql "$TARGET_URL" "SELECT count(*) FROM k")" $((chunks * 100)) "$1: rows A committed"

    # Within the lease, another host is refused; past it, A is presumed dead.
    expect_exit 4 "$NS" run job.yaml file=in.csv
    expect_err "already running as execution"
    # Past the lease (1 s, from A's last heartbeat): waited for as a
    # condition, not a guess of how long the machine takes to get there.
    local rc tries=0
    while :; do
        rc=0
        timeout -k 5 60 "$NS" run job.yaml file=in.csv > "$T/out" 2> "$T/err" || rc=$?
        [ "$rc" = 4 ] && grep -q "already running as execution" "$T/err" && [ $tries -lt 150 ] || break
        tries=$((tries + 1))
        sleep 0.2
    done
    [ "$rc" = 0 ] || { cat "$T/err" >&2; fail "$1: run B past A's lease exited $rc"; }
    expect_err "on elsewhere stopped without recording an end"
    expect_err "resuming after chunk $chunks"
    local b
    b=$(sed -n 's/^nightshift: execution \([0-9]*\) restarts execution.*/\1/p' "$T/err")
    [ -n "$b" ] || { cat "$T/err" >&2; fail "$1: run B's execution id not reported"; }

    # A wakes up, reads its fourth chunk, and must not commit it.
    kill -CONT $a
    local rc=0
    wait $a || rc=$?
    [ $rc != 0 ] || fail "$1: the woken run A ended with success"
    assert_eq "$(db_sql "$TARGET_URL" "SELECT count(*), count(DISTINCT id) FROM k")" "$ROWS|$ROWS" \
        "$1: rows (count, distinct) after the takeover"
    if [ "${4:-}" = locked ]; then
        grep -qF "save checkpoint: server closed the connection" "a-$1.err" ||
            { cat "a-$1.err" >&2; fail "$1: run A did not report its ended session"; }
        [ "$(grep -c "terminating connection due to idle-in-transaction timeout" "$(pg_log)")" -gt "$idle_before" ] ||
            fail "$1: the server did not end A's idle transaction"
    else
        grep -qF "execution $b has taken this job instance over" "a-$1.err" ||
            { cat "a-$1.err" >&2; fail "$1: run A did not report the takeover"; }
    fi
    assert_eq "$(show_field "$b" "['status']")" COMPLETED "$1: run B"
    local a_id
    a_id=$(sed -n 's/.*execution \([0-9]*\): process .* on elsewhere.*/\1/p' "$T/err")
    assert_eq "$(show_field "$a_id" "['status']")" FAILED "$1: run A in the repository"
    echo "$1: the frozen run was fenced; $ROWS rows once"
}

variant sqlite-target "sqlite:$T/target.db" "$(pg_db ns_takeover_repo)"
variant pg-target "$(pg_db ns_takeover_target)" "$(pg_db ns_takeover_repo2)"
shared=$(pg_db ns_takeover_shared)
variant pg-shared "$shared" "$shared"
variant pg-target-locked "$(pg_db ns_takeover_target3)" "$(pg_db ns_takeover_repo3)" locked
echo "takeover: ok"

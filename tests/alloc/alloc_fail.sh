#!/usr/bin/env bash
# Allocation failures, in the spirit of SQLite's fault simulation: a load
# (CSV -> SQLite, with rejects) and a restart of a killed load are each run
# with the Nth allocation failing (NIGHTSHIFT_TEST_FAIL_ALLOC=N, test builds
# only: nightshift's, SQLite's and jansson's allocations are counted), for
# N = 1, 2, ... until a run no longer reaches N. Every such run ends with a
# clean "out of memory" error (exit 1) or succeeds, never a crash or a leak
# (this build has ASan and LeakSanitizer); run again with memory, the job
# completes with every row and every reject exactly once.
# ALLOC_STRIDE=K tries every Kth N past the first ALLOC_DENSE (default 300)
# (default 1: all); make test runs it sparser (tests/CMakeLists.txt).
source "$(dirname "$0")/../integration/lib.sh"
STRIDE=${ALLOC_STRIDE:-1}
DENSE=${ALLOC_DENSE:-300}
python3 - > in.csv <<'PY'
print("id,v")
for i in range(1, 41):
    print(f"{i},{'bad' if i % 9 == 0 else 'v' + str(i)}")
PY
export TARGET_URL="sqlite:$T/target.db"
load_job job.yaml alloc k "skip: {limit: 100}" 'rejects: "rejects/${execution.id}.csv"'
sed -i 's/chunk: 100/chunk: 10/' job.yaml
fresh() {
    rm -rf target.db* repo.db* rejects
    sql target.db "CREATE TABLE k (id INTEGER NOT NULL, v TEXT CHECK (v <> 'bad'))"
}
check() { # check WHAT: every good row once, every bad row rejected once
    assert_eq "$(sql target.db "SELECT count(*), count(DISTINCT id) FROM k")" "36|36" "$1: rows"
    local got
    got=$(cat rejects/*.csv | grep -v '^line,' | cut -d, -f1 | sort -n | paste -sd, -)
    assert_eq "$got" "10,19,28,37" "$1: rejected lines"
}
# One run with allocation N failing: a clean end, then a clean completion.
# Prints "reached" when allocation N was reached.
attempt() { # attempt WHAT N
    local rc=0
    NIGHTSHIFT_TEST_FAIL_ALLOC=$2 "$NS" run $RUN > run.out 2> run.err || rc=$?
    if grep -q "Sanitizer\|runtime error" run.err; then
        cat run.err >&2
        fail "$1: allocation $2 failing: the sanitizer reports the above"
    fi
    if [ $rc != 0 ]; then
        [ $rc == 1 ] || { cat run.err >&2; fail "$1: allocation $2 failing: exit $rc"; }
        # Said otherwise: SQLite, out of memory inside, may report what it
        # then saw ("no such table") rather than why. Listed at the end.
        grep -q "out of memory" run.err || echo "$1 $2: $(grep -v 'as asked' run.err | tail -1)" >> misworded.txt
    fi
    rc=0
    "$NS" run $RUN > run2.out 2> run2.err || rc=$?
    if [ $rc == 4 ] && grep -q "already completed" run2.err; then
        :
    elif [ $rc != 0 ]; then
        cat run.err run2.err >&2
        fail "$1: after allocation $2 failed, the next run exited $rc"
    fi
    $CHECK "$1 (allocation $2 failed)"
    grep -q "allocation $2 failed as asked" run.err && echo reached || true
}
next_n() { [ "$1" -lt "$DENSE" ] && echo $(($1 + 1)) || echo $(($1 + STRIDE)); }

# sweep WHAT PREPARE: attempt WHAT with allocation N failing, after PREPARE
# (a command that sets the files up), for N = 1, 2, ... (next_n) until a
# run no longer reaches N.
sweep() {
    local n=1 tried=0 r
    while :; do
        $2
        r=$(attempt "$1" $n)
        tried=$((tried + 1))
        [ "$r" == reached ] || break
        n=$(next_n $n)
    done
    echo "$1: $tried runs, each with one allocation failing (of about $n), all clean"
}

RUN="job.yaml file=in.csv" CHECK=check
# A load.
sweep load fresh

# A restart: a load killed before its third commit, restarted.
fresh
expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=3 "$NS" run job.yaml file=in.csv
mkdir saved && cp -r target.db* repo.db* rejects saved/
restore() { rm -rf target.db* repo.db* rejects && cp -r saved/* .; }
sweep restart restore
# A copy through the query reader (SQLite -> SQLite): its pages, keys and
# cells allocated as it reads (an allocation that failed there was once
# skipped, and a NULL page read).
cat > query.yaml <<YAML
job: alloc-query
connections:
  src: "sqlite:$T/src.db"
  target: "sqlite:$T/target.db"
steps:
  - name: copy
    chunk: 10
    reader: {query: {connection: src, sql: "SELECT id, v FROM s", key: [id]}}
    writer: {table: {connection: target, name: k}}
YAML
fresh_query() {
    fresh
    rm -f src.db
    sql src.db "CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT)"
    for i in $(seq 1 40); do [ $((i % 9)) = 0 ] || echo "INSERT INTO s VALUES ($i, 'v$i');"; done | sqlite3 src.db
}
check_query() {
    assert_eq "$(sql target.db "SELECT count(*), count(DISTINCT id) FROM k")" "36|36" "$1: rows"
}
RUN=query.yaml CHECK=check_query
sweep query fresh_query
if [ -s misworded.txt ]; then
    echo "$(wc -l < misworded.txt) runs failed cleanly but did not say 'out of memory':"
    sort -u -t: -k2 misworded.txt | head -20
    if [ "${ALLOC_STRICT:-0}" == 1 ]; then fail "ALLOC_STRICT: every failure must say out of memory"; fi
fi

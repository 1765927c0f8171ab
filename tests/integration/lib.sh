# lib.sh - helpers for the integration tests: a scratch directory, a private
# repository, assertions that say what was expected. Source it first.
set -euo pipefail
: "${NS:?set NS to the nightshift binary}"
: "${NS_SRC:?set NS_SRC to the source tree}"
T=$(mktemp -d "${TMPDIR:-/tmp}/ns-it.XXXXXX")
export NIGHTSHIFT_REPOSITORY="sqlite:$T/repo.db"
export CI=1 # one summary line per step, no live progress
cleanup() {
    local pids
    pids=$(jobs -p 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
cd "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }
assert_eq() { [ "$1" == "$2" ] || fail "$3: expected '$2', got '$1'"; }
# expect_exit CODE CMD...: runs CMD, checks its exit status, keeps its stderr in $T/err.
expect_exit() {
    local want=$1 got=0
    shift
    "$@" >"$T/out" 2>"$T/err" || got=$?
    if [ "$got" != "$want" ]; then
        echo "--- stdout" >&2; cat "$T/out" >&2; echo "--- stderr" >&2; cat "$T/err" >&2
        fail "'$*' exited $got, expected $want"
    fi
}
expect_err() { grep -qF -- "$1" "$T/err" || { cat "$T/err" >&2; fail "stderr lacks: $1"; }; }
# SQLite queries wait (up to 10 s) for a running job's write lock instead of failing.
sql() { sqlite3 -batch -cmd ".timeout 10000" "$1" "$2"; }
# JSON field of `show --json` (python3 is a test dependency).
show_field() { show_eval "$1" "d$2"; }
# show_eval ID EXPR: a Python expression over d, the JSON of `show ID --json`.
show_eval() {
    "$NS" show "$1" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$2"
}
# db_sql DB SQL: one statement on sqlite:PATH, a bare SQLite path or a
# postgresql:// URL; rows as a|b (SQLite waits up to 10 s for a lock).
db_sql() {
    case $1 in
    postgresql:*) psql "$1" -qAtX -c "$2" ;;
    mysql:*) # mysql://root@localhost/DB?socket=... (my_db's)
        local db=${1#*localhost/}
        mariadb --no-defaults -S "$(my_sock)" -uroot --batch --skip-column-names "${db%%\?*}" -e "$2" | tr '\t' '|' ;;
    *) sql "${1#sqlite:}" "$2" ;;
    esac
}
# load_job FILE JOB TABLE [KEY: VALUE ...]: a one-step CSV -> table job whose
# target is $TARGET_URL (sqlite:PATH or postgresql://...), with parameters `file` and `how` (identifying, default '':
# for tests that need several instances of one file). Extra arguments are more
# step keys, e.g. "rejects: x.csv" or "skip: {limit: 10}"; WRITER_MODE adds a mode.
load_job() {
    local file=$1 job=$2 table=$3
    shift 3
    {
        echo "job: $job"
        echo "params:"
        echo "  file: {type: string, required: true}"
        echo "  how: {type: string, default: ''}"
        echo "connections:"
        echo "  target: \"\${env.TARGET_URL}\""
        echo "steps:"
        echo "  - name: load"
        echo "    chunk: 100"
        echo "    reader: {csv: {path: \"\${params.file}\"}}"
        echo "    writer: {table: {connection: target, name: $table${WRITER_MODE:+, mode: $WRITER_MODE}}}"
        for extra in "$@"; do echo "    $extra"; done
    } > "$file"
}
# csv_rows FROM TO [PREFIX]: "id,v" then FROM..TO as "i,PREFIXi".
csv_rows() {
    python3 -c "
import sys
a, b, p = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print('id,v')
for i in range(a, b + 1): print(f'{i},{p}{i}')" "$1" "$2" "${3:-v}"
}
# got_rejects FILE: a rejects file as "line code" lines, in its order.
got_rejects() {
    python3 - "$1" <<'PY'
import csv, sys
for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")):
    print(r["line"], r["code"])
PY
}
# pg_db NAME: a fresh database on the test server (ctest fixture "pg"; tests
# using it are named *_pg*); prints its URL. Fails when there is no server.
pg_db() {
    local url
    url=$(cat "${NS_PG_STATE:?no PostgreSQL test server}/url" 2>/dev/null) ||
        fail "no PostgreSQL test server: the pg fixture did not start"
    psql "$url" -qAtc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null ||
        fail "cannot create database $1"
    echo "${url/postgresql:\/\/\/postgres/postgresql:///$1}"
}
# The test server's log (statements of databases set to log them).
pg_log() { echo "$(cat "$NS_PG_STATE/dir")/server.log"; }
# my_db NAME: a fresh database on the MariaDB test server (ctest fixture
# "mysql"; tests using it are named *_mysql*); prints its URL. Fails when
# there is no server. my_sql DB ARGS...: the mariadb client on it.
my_sock() {
    cat "${NS_MY_STATE:?no MariaDB test server}/sock" 2>/dev/null ||
        fail "no MariaDB test server: the mysql fixture did not start"
}
my_sql() {
    local db=$1
    shift
    mariadb --no-defaults -S "$(my_sock)" -uroot --batch --skip-column-names "$db" "$@"
}
my_db() {
    my_sql mysql -e "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1 CHARACTER SET utf8mb4" ||
        fail "cannot create database $1"
    echo "mysql://root@localhost/$1?socket=$(my_sock)"
}

# common.sh - sourced by each example's run.sh: the nightshift binary, where
# the example keeps its state, and a way to look at the target.
#
#   NS            the binary (first argument of run.sh, else build/nightshift)
#   TARGET_URL    the database the example works on; default: an SQLite file
#                 in out/ (set it to a postgresql:// URL to use PostgreSQL)
#   NIGHTSHIFT_REPOSITORY  default: out/nightshift.db
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NS=${1:-$here/../../build/nightshift}
NS=$(cd "$(dirname "$NS")" && pwd)/$(basename "$NS")
cd "$here"
mkdir -p out
export TARGET_URL=${TARGET_URL:-sqlite:out/$(basename "$here").db}
export NIGHTSHIFT_REPOSITORY=${NIGHTSHIFT_REPOSITORY:-sqlite:out/nightshift.db}

# q SQL: a query on the target, rows as a|b|c.
q() {
    case $TARGET_URL in
    postgresql:*) psql "$TARGET_URL" -qAtX -c "$1" ;;
    *) sqlite3 -batch "${TARGET_URL#sqlite:}" "$1" ;;
    esac
}
# say TEXT: a heading in the example's output.
say() { printf '\n== %s\n' "$*"; }
# run ARGS...: nightshift, echoed first; its exit status is printed, not fatal.
run() {
    echo "\$ nightshift $*"
    local rc=0
    "$NS" "$@" || rc=$?
    echo "(exit status $rc)"
}

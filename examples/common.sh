# common.sh - sourced by each example's run.sh: the nightshift binary, where
# the example keeps its state, and a way to look at the target.
#
#   NS            the binary (first argument of run.sh, else build/nightshift)
#   TARGET_URL    the database the example works on; default: an SQLite file
#                 in out/ (a postgresql:// URL to use PostgreSQL; mysql://user:pw@host/db
#                 or mysql://user@localhost/db?socket=PATH for MariaDB/MySQL: goods-filter)
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
    mysql:* | mariadb:*) # mysql://user[:password]@host[:port]/db[?socket=PATH]
        python3 -c '
import subprocess, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
q = urllib.parse.parse_qs(u.query)
args = ["mariadb", "--no-defaults", "--batch", "--skip-column-names", "-u", urllib.parse.unquote(u.username or "")]
args += ["-S", q["socket"][0]] if "socket" in q else ["-h", u.hostname or "localhost", "-P", str(u.port or 3306)]
env = {"MYSQL_PWD": urllib.parse.unquote(u.password)} if u.password else {}
out = subprocess.run(args + [u.path.lstrip("/"), "-e", sys.argv[2]], env=env, check=True, capture_output=True, text=True).stdout
sys.stdout.write(out.replace("\t", "|"))' "$TARGET_URL" "$1"
        ;;
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

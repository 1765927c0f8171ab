#!/usr/bin/env bash
# make demo: load users.csv into a fresh SQLite database with nightshift, show
# the summary, the recorded run and where the rejected rows went; then show
# that a second run of the same month is refused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=$(cd "$(dirname "${1:-build/nightshift}")" && pwd)/$(basename "${1:-build/nightshift}")
cd "$here"
rm -rf out && mkdir -p out
export NIGHTSHIFT_REPOSITORY="sqlite:out/nightshift.db"

sqlite3 out/demo.db < schema.sql
echo "== nightshift run job.yaml file=users.csv month=2026-11-01"
"$ns" run job.yaml file=users.csv month=2026-11-01 || true
echo
echo "== nightshift list"
"$ns" list
echo
echo "== nightshift show 1"
"$ns" show 1
echo
rejects=$(ls out/rejects/*.csv)
echo "== the first rejects of $(( $(wc -l < "$rejects") - 1 )) (file: $rejects)"
head -8 "$rejects"
echo
echo "== rows in users: $(sqlite3 out/demo.db 'SELECT count(*) FROM users')"
echo
echo "== the same month again is refused (exit 4):"
set +e
"$ns" run job.yaml file=users.csv month=2026-11-01
echo "exit status $?"

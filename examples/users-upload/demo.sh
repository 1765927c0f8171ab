#!/usr/bin/env bash
# make demo: load users.csv into a fresh database with nightshift (SQLite in
# out/ unless TARGET_URL says otherwise), check it, publish it; show the
# summary, the recorded run and where the rejected rows went; then show that a
# second run of the same month is refused.
source "$(dirname "$0")/../common.sh"
case $TARGET_URL in sqlite:*) rm -f "${TARGET_URL#sqlite:}" ;; esac
rm -rf out/rejects out/nightshift.db

echo "== nightshift run job.yaml file=users.csv month=2026-11-01"
"$NS" run job.yaml file=users.csv month=2026-11-01 || true
echo
echo "== nightshift list"
"$NS" list
echo
echo "== nightshift show 1"
"$NS" show 1
echo
rejects=$(ls out/rejects/*.csv)
echo "== the first rejects of $(( $(wc -l < "$rejects") - 1 )) (file: $rejects)"
head -8 "$rejects"
echo
echo "== rows in users: $(q 'SELECT count(*) FROM users')"
echo "== published: $(q 'SELECT month, users FROM publications')"
echo
echo "== the same month again is refused (exit 4):"
set +e
"$NS" run job.yaml file=users.csv month=2026-11-01
echo "exit status $?"

#!/usr/bin/env bash
# The dormant-users bug of docs/scenarios.md §4: a job reads users inactive for a
# year that are still active, and switches them to dormant in the same table
# (it updates the very column its query filters on). Offset paging skips half
# of them; keyset paging on the key reads every row exactly once, also across
# a crash and restart. The query's :cutoff is a bound job parameter.
source "$(dirname "$0")/lib.sh"
export SRC="$T/app.db"
sqlite3 "$SRC" <<'SQL'
CREATE TABLE users (id INTEGER PRIMARY KEY, last_login DATE NOT NULL, status TEXT NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
INSERT INTO users SELECT i, CASE WHEN i % 6 = 0 THEN '2026-10-01' ELSE '2024-05-01' END, 'active' FROM n;
SQL
want=$(sql "$SRC" "SELECT count(*) FROM users WHERE last_login < '2025-11-21'")
cat > dormant.yaml <<'EOF2'
job: dormant-users
params:
  cutoff: {type: date, required: true}
connections:
  app: "sqlite:${env.SRC}"
steps:
  - name: switch
    chunk: 100
    reader:
      query:
        connection: app
        sql: >
          SELECT id, 'dormant' AS status FROM users
          WHERE status = 'active' AND last_login < :cutoff
        key: [id]
    writer:
      table: {connection: app, name: users, mode: update, key: [id]}
EOF2

# What offset paging would do on the same data: it skips rows.
offset_reads=$(python3 - "$SRC" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1]); db.execute("BEGIN")
reads, offset = 0, 0
while True:
    rows = db.execute("SELECT id FROM users WHERE status = 'active' AND last_login < '2025-11-21'"
                      " ORDER BY id LIMIT 100 OFFSET ?", (offset,)).fetchall()
    if not rows: break
    reads += len(rows); offset += len(rows)
    db.executemany("UPDATE users SET status = 'dormant' WHERE id = ?", rows)
db.rollback()
print(reads)
PY
)
[ "$offset_reads" -lt "$want" ] || fail "the offset simulation did not reproduce the bug"

# Keyset: dies in the middle of chunk 35 (the test-only fault point exits as
# kill -9 would, after reading the chunk, before its commit; a timed kill
# raced the job to its end on a fast run), then run again.
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=35 expect_exit 98 "$NS" run dormant.yaml cutoff=2025-11-21
expect_exit 0 "$NS" run dormant.yaml cutoff=2025-11-21
read1=$(show_field 1 "['steps'][0]['read_count']")
read2=$(show_field 2 "['steps'][0]['read_count']")
assert_eq "$(sql "$SRC" "SELECT count(*) FROM users WHERE status = 'dormant'")" "$want" "users switched"
assert_eq "$(sql "$SRC" "SELECT count(*) FROM users WHERE status = 'dormant' AND last_login >= '2025-11-21'")" 0 \
    "recent users switched"
assert_eq "$((read1 + read2))" "$want" "rows read over both runs (none twice, none skipped)"
echo "keyset: $want users switched, read $read1 + $read2 times; offset paging would have read $offset_reads"
expect_exit 2 "$NS" run dormant.yaml
expect_err "parameter 'cutoff' is required"
sed 's/:cutoff/:cutof/' dormant.yaml > bad.yaml
expect_exit 2 "$NS" validate bad.yaml
expect_err "bad.yaml:12: steps[0].reader.query.sql: :cutof is not a declared parameter"

# A crash mid-commit leaves a hot journal in a rollback-journal database; the
# reader's connection must be able to roll it back (a read-only one cannot).
python3 - "$SRC" <<'PY'
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 1")   # spill pages to the file mid-transaction
db.execute("BEGIN")
db.execute("UPDATE users SET status = 'half-done'")
os._exit(0)                           # no COMMIT, no ROLLBACK
PY
[ -s "$SRC-journal" ] || fail "the test left no hot journal"
expect_exit 0 "$NS" run dormant.yaml cutoff=2025-11-21 --next
assert_eq "$(sql "$SRC" "SELECT count(*) FROM users WHERE status = 'half-done'")" 0 "rows of the crashed transaction"
echo "keyset after a hot journal: ok"

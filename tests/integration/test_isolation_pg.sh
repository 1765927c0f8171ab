#!/usr/bin/env bash
# Bad-row isolation into PostgreSQL (docs/internals.md, "PostgreSQL target"):
# every class of server-side refusal — CHECK constraints the client reads
# (lower(email) = email among them) and one it does not (LIKE: probed),
# a foreign key without a parent, keys of rows already in the table, keys
# of earlier rows of the load — at a high rate over many chunks, so the
# writer holds rows back, probes, and starts a chunk over once a probe turns
# on. The result must be what a row-by-row model of the server says: the
# same rows loaded, the same lines rejected with the same codes; and where a
# held row and a later row collide, the earlier record wins only if the
# server takes it. Also: the same file loaded again into the full table (a
# re-run) rejects every row once, as 23505.
source "$(dirname "$0")/lib.sh"
export TARGET_URL
TARGET_URL=$(pg_db ns_isolation)
psql "$TARGET_URL" -q <<'SQL'
CREATE TABLE parents (id integer PRIMARY KEY);
INSERT INTO parents SELECT g FROM generate_series(1, 500) g;
CREATE TABLE acc (
    id     integer PRIMARY KEY,
    email  text NOT NULL UNIQUE CHECK (lower(email) = email) -- read by the client
                                CHECK (email NOT LIKE '%#%'),    -- not read: probed
    status text NOT NULL CHECK (status IN ('active', 'dormant')),
    points integer CHECK (points >= 0 AND points < 100000),
    ratio  numeric(6,2) CHECK (ratio <> 0),
    ref    integer REFERENCES parents
);
-- rows already in the table before the load
INSERT INTO acc SELECT g, 'pre' || g || '@e.com', 'active', 1, 1, 1 FROM generate_series(900001, 900300) g;
SQL
# The model: rows in order, each bad in one way or good; a bad row is
# rejected with its class's SQLSTATE, a good one inserted (so it can collide
# with later ones). want.txt: "line code" of every reject.
python3 - <<'PY'
import random
random.seed(7)
ids, emails = set(range(900001, 900301)), {f"pre{i}@e.com" for i in range(900001, 900301)}
parents = set(range(1, 501))
lines, want, good = ["id,email,status,points,ratio,ref"], [], []
held_check = {}  # id -> line of a CHECK-violating row, for the collision cases
# lower() in the test database's C locale: ASCII letters only (É stays É)
ascii_lower = lambda s: "".join(c.lower() if "A" <= c <= "Z" else c for c in s)
for n in range(1, 6001):
    line = n + 1
    r = {"id": str(n), "email": f"u{n}@e.com", "status": "active", "points": str(random.randint(0, 500)),
         "ratio": "1.50", "ref": str(random.randint(1, 500))}
    k = random.random()
    if k < 0.03:
        r["status"] = random.choice(["deleted", "Active", "active "])
    elif k < 0.06:
        r["points"] = random.choice(["-1", "100000", "-0001"])
    elif k < 0.08:
        r["ratio"] = random.choice(["0", "0.00", "-0.0"])
    elif k < 0.12:
        r["ref"] = str(random.randint(501, 10**6))
    elif k < 0.15:
        r["id"] = str(random.randint(900001, 900300))       # a row already in the table
    elif k < 0.17:
        r["email"] = f"pre{random.randint(900001, 900300)}@e.com"
    elif k < 0.20 and good:
        r["id"] = random.choice(good)                          # an earlier row of the load
    elif k < 0.22 and held_check:
        # a valid row colliding with an earlier row that a CHECK refuses:
        # the earlier one is not in the table, so this one loads
        r["id"] = random.choice(list(held_check))
        del held_check[r["id"]]
    elif k < 0.24:
        r["email"] = random.choice([f"U{n}@e.com", f"É{n}@e.com"])  # lower(): read, or in doubt
    elif k < 0.26:
        r["email"] = f"u{n}#e.com"                           # a CHECK the client does not read
    # the model of the server
    ok_check = r["status"] in ("active", "dormant") and 0 <= int(r["points"]) < 100000 and float(r["ratio"]) != 0 \
        and r["email"] == ascii_lower(r["email"]) and "#" not in r["email"]
    if not ok_check:
        want.append(f"{line} 23514")
        held_check.setdefault(r["id"], line)
    elif int(r["ref"]) not in parents:
        want.append(f"{line} 23503")
    elif int(r["id"]) in ids or r["email"] in emails:
        want.append(f"{line} 23505")
    else:
        ids.add(int(r["id"]))
        emails.add(r["email"])
        good.append(r["id"])
    lines.append(",".join(r[c] for c in ("id", "email", "status", "points", "ratio", "ref")))
open("in.csv", "w").write("\n".join(lines) + "\n")
open("want.txt", "w").write("\n".join(want) + "\n")
open("want_count.txt", "w").write(f"{len(ids)}\n")
# A re-run into the full table: a row rejected before is rejected again the
# same way; every row loaded before is now a duplicate.
codes = dict(w.split() for w in want)
again = [f"{n + 1} {codes.get(str(n + 1), '23505')}" for n in range(1, len(lines))]
open("want_again.txt", "w").write("\n".join(again) + "\n")
PY
load_job job.yaml isolation acc "skip: {limit: 100000}" 'rejects: "rejects/${execution.id}-${params.how}.csv"'
sed -i 's/chunk: 100$/chunk: 500/' job.yaml
grep -q 'chunk: 500' job.yaml || fail "the job's chunk size was not set"
psql "$TARGET_URL" -qc "ALTER DATABASE ns_isolation SET log_statement = 'all'"
TARGET_URL="$TARGET_URL&application_name=nsiso$$" expect_exit 0 "$NS" run job.yaml file=in.csv how=first
psql "$TARGET_URL" -qc "ALTER DATABASE ns_isolation RESET log_statement"
sleep 0.2 # the log is written asynchronously
# The CHECK the client does not read was asked of the server, as a probe.
[ "$(grep -E "\] nsiso$$ LOG:  (statement|execute)" "$(pg_log)" | grep -c "'%#%'::text)) IS FALSE")" -gt 0 ] ||
    fail "the unread CHECK was not probed"
got_rejects rejects/1-first.csv > got.txt
diff -u want.txt got.txt > diff.txt || { head -20 diff.txt >&2; fail "the rejects differ from the model's"; }
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc")" "$(cat want_count.txt)" "rows in the table"
# Every reject carries the server's own message.
python3 - rejects/1-first.csv <<'PY' || exit 1
import csv, sys
want = {"23514": "violates check constraint", "23503": "violates foreign key constraint",
        "23505": "duplicate key value violates unique constraint"}
for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")):
    assert want[r["code"]] in r["message"], r
PY

# A re-run of the whole file into the full table: every row is refused, once.
psql "$TARGET_URL" -qc "DELETE FROM nightshift_checkpoint"
expect_exit 0 "$NS" run job.yaml file=in.csv how=again
rows=$(($(wc -l < in.csv) - 1))
got_rejects rejects/2-again.csv > got_again.txt
diff -u want_again.txt got_again.txt > diff.txt || { head -20 diff.txt >&2; fail "the re-run's rejects differ from the model's"; }
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc")" "$(cat want_count.txt)" "rows after the re-run"
# Rows refused in bulk (their key found in the table) carry the message the
# server gives one such row: the primary key's, with the key.
python3 - rejects/2-again.csv rejects/1-first.csv in.csv <<'PY' || exit 1
import csv, sys
first = {r["line"] for r in csv.DictReader(open(sys.argv[2], newline="", encoding="utf-8"))}
ids = {str(n + 1): l.split(",")[0] for n, l in enumerate(open(sys.argv[3], encoding="utf-8")) if n}
checked = 0
for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")):
    if r["line"] in first:
        continue
    want = f'duplicate key value violates unique constraint "acc_pkey" (Key (id)=({ids[r["line"]]}) already exists.)'
    assert r["message"] == want and r["column"] == "id", (r, want)
    checked += 1
assert checked > 4000, checked
PY
# Keys the probes and the bulk decision send as array elements: quotes,
# backslashes, braces, commas, spaces, the word null (an array NULL in any case). A row whose key is one
# of those, next to a key in the table, must load; the exact key is refused.
# The first row (a key in the table) turns the key probe on for the chunk.
python3 - <<'PY'
import csv
tricky = ['pre900001@e.com"', 'pre900001@e.com\\', '"pre900001@e.com"', '{pre900001@e.com}',
          'pre900001@e.com,x', ' pre900001@e.com', 'null', '{}', '\\"', 'a"b\\c{d}e,f']
with open("tricky.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "email", "status", "points", "ratio", "ref"])
    w.writerow([900002, "dup@e.com", "active", 1, 1, 1])                   # line 2: refused
    for n, e in enumerate(tricky):
        w.writerow([800000 + n, e, "active", 1, 1, 1])                     # load
    w.writerow([800100, "pre900003@e.com", "active", 1, 1, 1])             # refused
PY
psql "$TARGET_URL" -qc "DELETE FROM nightshift_checkpoint"
expect_exit 0 "$NS" run job.yaml file=tricky.csv how=tricky
assert_eq "$(got_rejects rejects/3-tricky.csv | paste -sd, -)" "2 23505,13 23505" "the tricky keys' rejects"
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc WHERE id BETWEEN 800000 AND 800009")" 10 \
    "rows with tricky keys loaded"
psql "$TARGET_URL" -qAtc "SELECT email FROM acc WHERE id BETWEEN 800000 AND 800009 ORDER BY id" > got_tricky.txt
python3 - got_tricky.txt <<'PY' || exit 1
import sys
want = ['pre900001@e.com"', 'pre900001@e.com\\', '"pre900001@e.com"', '{pre900001@e.com}',
        'pre900001@e.com,x', ' pre900001@e.com', 'null', '{}', '\\"', 'a"b\\c{d}e,f']
got = open(sys.argv[1], encoding="utf-8").read().split("\n")[:len(want)]
assert got == want, got
PY

# The same with keys only spaces set apart from keys in the table (an
# unquoted array element would lose them and match): they must load.
printf 'id,email,status,points,ratio,ref\n900004,x@e.com,active,1,1,1\n800050, pre900005@e.com,active,1,1,1\n800051,pre900006@e.com ,active,1,1,1\n800052,pre900007@e.com,active,1,1,1\n' > spaces.csv
psql "$TARGET_URL" -qc "DELETE FROM nightshift_checkpoint"
expect_exit 0 "$NS" run job.yaml file=spaces.csv how=spaces
assert_eq "$(got_rejects rejects/4-spaces.csv | paste -sd, -)" "2 23505,5 23505" "the spaced keys' rejects"
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM acc WHERE id IN (800050, 800051)")" 2 \
    "rows whose keys differ by spaces loaded"

# CHECKs the client does not read and the probe cannot always evaluate: one
# that divides by the value (the server's own error, 22012, for 0), one
# calling a function that writes a row each call. Exactly what the server
# says is rejected, and the function's writes are those of the rows loaded:
# what the probes and the failed attempts did is undone.
psql "$TARGET_URL" -q <<'SQL'
CREATE TABLE calls (note text);
CREATE FUNCTION noted(n text) RETURNS boolean LANGUAGE plpgsql AS
    $$BEGIN INSERT INTO calls VALUES (n); RETURN n <> 'bad'; END$$;
CREATE TABLE odd (id integer PRIMARY KEY, v integer CHECK (100 / v > 1), note text CHECK (noted(note)));
SQL
python3 - <<'PY'
import random
random.seed(3)
want = []
with open("odd.csv", "w") as f:
    f.write("id,v,note\n")
    for n in range(1, 1201):
        v, note, k = random.randint(1, 49), f"n{n}", random.random()
        if k < 0.04:
            v = 0          # 22012 division by zero
        elif k < 0.08:
            v = 200        # 100 / 200 = 0: 23514
        elif k < 0.12:
            note = "bad"   # 23514 from the function
        if v == 0:
            want.append(f"{n + 1} 22012")
        elif 100 // v <= 1 or note == "bad":
            want.append(f"{n + 1} 23514")
        f.write(f"{n},{v},{note}\n")
open("want_odd.txt", "w").write("\n".join(want) + "\n")
PY
load_job odd.yaml odd odd "skip: {limit: 100000}" 'rejects: "rejects/${execution.id}-odd.csv"'
expect_exit 0 "$NS" run odd.yaml file=odd.csv
got_rejects rejects/5-odd.csv > got_odd.txt
diff -u want_odd.txt got_odd.txt > diff.txt || { head -20 diff.txt >&2; fail "the odd CHECKs' rejects differ from the model's"; }
loaded=$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM odd")
assert_eq "$loaded" "$((1200 - $(grep -c . want_odd.txt)))" "rows the odd CHECKs let in"
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM calls")" "$loaded" "the CHECK function's writes (one per row loaded)"

# A table with a trigger: nothing is held back (a trigger may depend on the
# order rows arrive in), so every refusal is found by isolating the COPY
# that failed, in segments sized from the load's error rate. 3,000 rows,
# 15% bad: the trigger's RAISE, a CHECK, a foreign key (no line: bisected),
# a key of an earlier row; against the model.
psql "$TARGET_URL" -q <<'SQL'
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN IF NEW.note = 'no' THEN RAISE EXCEPTION 'refused %', NEW.id; END IF; RETURN NEW; END$$;
CREATE TABLE trg (id integer PRIMARY KEY, note text, points integer CHECK (points >= 0),
                  ref integer REFERENCES parents);
CREATE TRIGGER refuse BEFORE INSERT ON trg FOR EACH ROW EXECUTE FUNCTION refuse();
SQL
python3 - <<'PY'
import random
random.seed(9)
want, ids = [], set()
with open("trg.csv", "w") as f:
    f.write("id,note,points,ref\n")
    for n in range(1, 3001):
        r = {"id": n, "note": "ok", "points": 1, "ref": random.randint(1, 500)}
        k = random.random()
        if k < 0.04:
            r["note"] = "no"
        elif k < 0.08:
            r["points"] = -1
        elif k < 0.11:
            r["ref"] = 999
        elif k < 0.15 and ids:
            r["id"] = random.choice(sorted(ids))
        code = "P0001" if r["note"] == "no" else "23514" if r["points"] < 0 else \
            "23505" if r["id"] in ids else "23503" if r["ref"] > 500 else None
        if code:
            want.append(f"{n + 1} {code}")
        else:
            ids.add(r["id"])
        f.write(f"{r['id']},{r['note']},{r['points']},{r['ref']}\n")
open("want_trg.txt", "w").write("\n".join(want) + "\n")
PY
load_job trg.yaml trg trg "skip: {limit: 100000}" 'rejects: "rejects/${execution.id}-trg.csv"'
sed -i 's/chunk: 100$/chunk: 500/' trg.yaml
expect_exit 0 "$NS" run trg.yaml file=trg.csv
got_rejects rejects/6-trg.csv > got_trg.txt
diff -u want_trg.txt got_trg.txt > diff.txt || { head -20 diff.txt >&2; fail "the trigger table's rejects differ from the model's"; }
assert_eq "$(psql "$TARGET_URL" -qAtc "SELECT count(*) FROM trg")" "$((3000 - $(grep -c . want_trg.txt)))" \
    "rows in the table with the trigger"

echo "isolation: $(wc -l < want.txt) rejects as the model says; a re-run of $rows rows refused once each"

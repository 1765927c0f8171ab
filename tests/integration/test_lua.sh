#!/usr/bin/env bash
# Lua processors: items changed, filtered (counted) and rejected (with their
# line and the script's message); a runaway loop rejects its item, not the
# job; the sandbox has no os, io, require or bytecode; open(params)/close()
# run once; a misspelt field is an error, not a silently dropped value;
# scripts with errors are refused before anything runs; a crash mid-load
# restarts without losing or repeating a row.
source "$(dirname "$0")/lib.sh"
export TARGET_DB="$T/t.db"
sqlite3 "$TARGET_DB" "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT)"
python3 - <<'PY'
with open("in.csv", "w") as f:
    f.write("id,name,qty\n")
    for i in range(1, 5001):
        f.write(f"{i},n{i},{i % 7}\n")
PY
job() { # job FILE PROCESSOR-YAML [EXTRA STEP KEYS...]
    local file=$1 proc=$2
    shift 2
    {
        echo "job: $(basename "${file%.yaml}")"
        echo "params:"
        echo "  factor: {type: int, default: 3}"
        echo "connections:"
        echo "  t: \"sqlite:\${env.TARGET_DB}\""
        echo "steps:"
        echo "  - name: load"
        echo "    chunk: 1000"
        echo "    reader: {csv: {path: in.csv}}"
        echo "    processor:"
        echo "$proc" | sed 's/^/      /'
        echo "    writer: {table: {connection: t, name: items}}"
        echo "    skip: {limit: 100000}"
        echo "    rejects: $(basename "${file%.yaml}").rej.csv"
        for extra in "$@"; do echo "    $extra"; done
    } > "$file"
}

# Transform, filter, reject, runaway loop, state across items, open/close.
job main.yaml 'columns: [id, name, qty, note]
instructions: 100000
lua: |
  local seen = 0
  function open(params) factor = tonumber(params.factor) end
  function process(item)
    seen = seen + 1
    local q = tonumber(item.qty)
    if q == 0 then return nil end
    if q == 6 then error("qty six is not allowed") end
    if item.id == "78" then while true do end end
    item.qty = q * factor
    item.name = string.upper(item.name)
    item.note = "seen " .. seen
    return item
  end
  function close() print("saw " .. seen) end'
expect_exit 0 "$NS" run main.yaml
expect_err "lua: saw 5000"
n0=$(python3 -c "print(sum(1 for i in range(1, 5001) if i % 7 == 0))")
n6=$(python3 -c "print(sum(1 for i in range(1, 5001) if i % 7 == 6))")
assert_eq "$(show_field 1 "['steps'][0]['filter_count']")" "$n0" "filtered"
assert_eq "$(show_field 1 "['steps'][0]['process_skip_count']")" "$((n6 + 1))" "process skips"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM items")" "$((5000 - n0 - n6 - 1))" "rows written"
assert_eq "$(sql "$TARGET_DB" "SELECT name, qty, note FROM items WHERE id = 2")" "N2|6|seen 2" "a changed row"
grep -q '^7,,NS_PROCESS,"main.yaml, steps\[0\].processor.lua:7: qty six is not allowed","6,n6,6"$' main.rej.csv ||
    fail "reject of line 7 lacks the script's message and line: $(sed -n 2p main.rej.csv)"
grep -q '^79,,NS_PROCESS,"main.yaml, steps\[0\].processor.lua:8: instruction limit of 100000 exceeded' main.rej.csv ||
    fail "the runaway loop did not reject its item: $(grep '^79,' main.rej.csv)"
assert_eq "$(sql "$TARGET_DB" "SELECT qty FROM items WHERE id = 80")" 9 "the item after the runaway loop"

# The sandbox: no os, io, require, dofile; load() refuses bytecode.
sqlite3 "$TARGET_DB" "DELETE FROM items"
job sandbox.yaml 'lua: |
  function process(item)
    assert(os == nil and io == nil and require == nil and dofile == nil and package == nil and debug == nil)
    local f, msg = load(string.dump(function() return 1 end))
    assert(f == nil and msg:find("binary"), "bytecode was loaded")
    assert(load("return 2")() == 2)
    return item
  end'
expect_exit 0 "$NS" run sandbox.yaml
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM items")" 5000 "rows through the sandboxed script"

# The 256 MiB cap: an item whose script asks for more is rejected; the rest load.
sqlite3 "$TARGET_DB" "DELETE FROM items"
job memory.yaml 'lua: |
  function process(item)
    if item.id == "2" then local s = string.rep("x", 300 * 1024 * 1024) end
    return item
  end'
expect_exit 0 "$NS" run memory.yaml
assert_eq "$(sed -n 2p memory.rej.csv | cut -d, -f1-4)" "3,,NS_PROCESS,not enough memory (the script may use 256 MiB)" \
    "the item over the memory cap"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM items")" 4999 "rows besides it"

# A field that is not a column is an error where it is set, not a lost value;
# a table of the script's own is checked the same way; bad return values.
sqlite3 "$TARGET_DB" "DELETE FROM items"
job fields.yaml 'lua: |
  function process(item)
    local i = tonumber(item.id)
    if i == 1 then item.nmae = "typo" end
    if i == 2 then return {id = item.id, colour = "red"} end
    if i == 3 then return 42 end
    if i == 4 then return {id = item.id, name = {}} end
    if i == 5 then return {id = item.id, name = true, qty = 7} end
    if i == 6 then return {id = item.id, qty = 1.5} end
    if i > 6 then return nil end
    return item
  end'
expect_exit 0 "$NS" run fields.yaml
rej_msgs() { python3 -c "
import csv, sys
for r in list(csv.reader(open(sys.argv[1])))[1:]: print(r[0], r[2], r[3])" "$1"; }
rej_msgs fields.rej.csv > got.txt
cat > want.txt <<'EOF2'
2 NS_PROCESS fields.yaml, steps[0].processor.lua:3: item has no column 'nmae' (declare new output columns in processor.columns)
3 NS_PROCESS process() returned field 'colour', which is not an output column (declare it in processor.columns)
4 NS_PROCESS process() must return a table or nil, not a number value
5 NS_PROCESS process() returned a table value for field 'name'
7 22P02 invalid input syntax for type integer: "1.5"
EOF2
diff -u want.txt got.txt >&2 || fail "rejects of bad fields"
grep -q "item has no column 'nmae'" fields.rej.csv || fail "the misspelt field is not named"
assert_eq "$(sql "$TARGET_DB" "SELECT id, name, qty FROM items")" "5|true|7" "values converted to text"

# Errors before anything runs: syntax (exit 2, file and line), no process(),
# an unreadable file; a file relative to the job file's directory works.
job syntax.yaml 'lua: |
  function process(item)
    return item
  edn'
expect_exit 2 "$NS" validate syntax.yaml
expect_err "syntax.yaml:11: steps[0].processor.lua: syntax.yaml, steps[0].processor.lua:3:"
job noproc.yaml 'lua: "x = 1"'
expect_exit 1 "$NS" run noproc.yaml
expect_err "the script defines no function process(item)"
job nofile.yaml 'file: nope.lua'
expect_exit 2 "$NS" validate nofile.yaml
expect_err "steps[0].processor.file: cannot read"
mkdir -p jobs
printf 'function process(item)\n  item.note = "from file"\n  return item\nend\n' > jobs/p.lua
job jobs/withfile.yaml 'file: p.lua
columns: [id, name, qty, note]'
sed -i 's|path: in.csv|path: ../in.csv|' jobs/withfile.yaml
sqlite3 "$TARGET_DB" "DELETE FROM items"
(cd jobs && expect_exit 0 "$NS" run withfile.yaml)
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM items WHERE note = 'from file'")" 5000 "rows from a script file"
job badopen.yaml 'lua: |
  function open(params) error("no config for factor " .. params.factor) end
  function process(item) return item end'
expect_exit 1 "$NS" run badopen.yaml
expect_err "processor open(): badopen.yaml, steps[0].processor.lua:1: no config for factor 3"

# More rejects in a row than a chunk holds (the chunk counts every record).
sqlite3 "$TARGET_DB" "DELETE FROM items"
job allbad.yaml 'lua: |
  function process(item) if tonumber(item.id) <= 2500 then error("no") end return item end'
expect_exit 0 "$NS" run allbad.yaml
assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM items")" 2500 "rows after 2,500 rejects in a row"
assert_eq "$(($(wc -l < allbad.rej.csv) - 1))" 2500 "rejects written"

# A crash mid-load (after chunk 3's commit, before the repository heard of
# it): the restart loads every row once and rejects every bad one once.
sqlite3 "$TARGET_DB" "DELETE FROM items"
job crash.yaml 'lua: |
  function process(item) if tonumber(item.qty) == 6 then error("six") end return item end'
NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=3 expect_exit 99 "$NS" run crash.yaml
expect_exit 0 "$NS" restart "$(sql "$T/repo.db" "SELECT max(id) FROM ns_job_execution")"
assert_eq "$(sql "$TARGET_DB" "SELECT count(*), count(DISTINCT id) FROM items")" "$((5000 - n6))|$((5000 - n6))" "rows across the crash"
assert_eq "$(($(wc -l < crash.rej.csv) - 1))" "$n6" "rejects across the crash"
# State across a restart: what the script keeps in `state` is saved with each
# committed chunk and given back before open(), so a running total, a list
# and a float go on as if the run had not crashed. Crashed twice: after a
# commit (before the repository heard of it) and with a chunk written but
# not committed.
sqlite3 "$TARGET_DB" "DELETE FROM items"
job state.yaml 'columns: [id, name, qty, note]
lua: |
  state.total = 0
  state.last = {}
  state.mean = 0.0
  state["odd \"key\""] = {nested = {true, "é"}}
  function open() opened = (state.total > 0) and "restored" or "fresh" end
  function process(item)
    local q = tonumber(item.qty)
    state.total = state.total + q
    table.insert(state.last, item.id)
    if #state.last > 3 then table.remove(state.last, 1) end
    state.mean = state.total / tonumber(item.id)
    item.note = string.format("%d %s %.6f %s", state.total, table.concat(state.last, "/"),
                              state.mean, opened)
    return item
  end'
NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT=2 expect_exit 99 "$NS" run state.yaml
NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=4 expect_exit 98 "$NS" run state.yaml
expect_exit 0 "$NS" run state.yaml
sql "$TARGET_DB" "SELECT id || ',' || note FROM items ORDER BY id" > got.txt
python3 - > want.txt <<'PY'
total, last = 0, []
for i in range(1, 5001):
    total += i % 7
    last = (last + [str(i)])[-3:]
    print(f"{i},{total} {'/'.join(last)} {total / i:.6f} {'fresh' if i <= 2000 else 'restored'}")
PY
diff want.txt got.txt > state.diff || fail "state across restarts: $(head -5 state.diff)"

# What cannot be saved fails the step at the commit, naming where it is.
sqlite3 "$TARGET_DB" "DELETE FROM items"
for bad in 'state.f = print|state.f is a function' 'state.t = {1, 2, x = 3}|state.t mixes list items and named keys' \
    'state.s = "\xff"|state.s is a string that is not valid UTF-8' 'state.n = 0/0|state.n is not a finite number' \
    'state = 7|state is a number, not a table' 'state.c = {}; state.c.c = state.c|state.c.c.c.c' \
    'state.big = string.rep("x", 1100000)|the checkpoint would be 110'; do
    job badstate.yaml "lua: |
  function process(item) ${bad%%|*} return item end"
    expect_exit 1 "$NS" run badstate.yaml
    expect_err "cannot save the state: ${bad#*|}"
    assert_eq "$(sql "$TARGET_DB" "SELECT count(*) FROM items")" 0 "rows after a state that cannot be saved ($bad)"
done
echo "lua: ok"

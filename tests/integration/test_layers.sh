#!/usr/bin/env bash
# The layering of src/ (docs/internals.md, "Modules"): modules include one
# another along util <- config, io, repo; io <- proc; io, repo <- db (the
# database drivers, a folder each: none includes another's); everything <-
# core, with no circle; no reader, writer or processor sees the job loader,
# and nothing below core sees a driver (the run hands one down): by what
# the compiler reads (gcc -MM, every header each file pulls in, transitively),
# not by what the source says it includes.
source "$(dirname "$0")/lib.sh"
cd "$NS_SRC"
command -v gcc > /dev/null || fail "gcc is needed to list what each file includes"
flags="-Iinclude -Isrc $(pkg-config --cflags libpq libmariadb sqlite3 yaml-0.1 lua5.4 jansson libxxhash 2> /dev/null || true)"
for f in src/*/*.c src/db/*/*.c; do
    # shellcheck disable=SC2086
    gcc -MM $flags "$f" 2> "$T/mm.err" | tr -d '\\\n' | sed 's/^[^:]*://' | tr -s ' ' '\n' |
        sed "s|^|$f |" || { cat "$T/mm.err" >&2; fail "gcc -MM $f"; }
    echo
done > "$T/deps"
python3 - "$T/deps" <<'PY' || exit 1
import collections, sys
mods = collections.defaultdict(set)   # module -> modules its files pull in
bad = []
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) != 2 or not parts[1].startswith("src/"):
        continue
    f, dep = parts
    # src/db/pg/table.c is module db/pg; src/db/db.h is module db
    def module(path):
        p = path.split("/")
        return "/".join(p[1:3]) if p[1] == "db" and len(p) > 3 else p[1]
    a, b = module(f), module(dep)
    if a != b:
        mods[a].add(b)
    if a in ("io", "proc") and b == "config":
        bad.append(f"{f} pulls in {dep}")
    if b.startswith("db") and not a.startswith("db") and a != "core":
        bad.append(f"{f} pulls in {dep} (a driver: only core picks one)")
    if a.startswith("db/") and b.startswith("db/") and a != b:
        bad.append(f"{f} pulls in {dep} (another driver's)")
if bad:
    sys.exit("FAIL: a layer is crossed:\n  " + "\n  ".join(bad))
# No circle among modules (depth-first search for a back edge).
state, path = {}, []
def visit(m):
    state[m] = 1
    path.append(m)
    for n in sorted(mods[m]):
        if state.get(n) == 1:
            sys.exit("FAIL: modules include each other: " + " -> ".join(path[path.index(n):] + [n]))
        if n not in state:
            visit(n)
    path.pop()
    state[m] = 2
for m in sorted(list(mods)):
    if m not in state:
        visit(m)
for m in sorted(mods):
    print(f"{m} -> {', '.join(sorted(mods[m]))}")
PY
# No .c file includes another's private header beyond its module's and the
# ones named above: core.h is core's alone.
if grep -l '"core/core.h"' src/*/*.c | grep -v '^src/core/'; then
    fail "core/core.h included outside src/core (above)"
fi
echo "layers: ok"

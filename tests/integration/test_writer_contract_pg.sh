#!/usr/bin/env bash
# The writer contract, run against every writer this build registers
# (`nightshift validate --plugins`; a writer without a fixture below fails
# the test): for each target it can write to,
#   counters  read = written + filtered + skipped; written = the rows the
#             target holds; the writer's refusals counted as write skips;
#   rejects   every record the writer refuses is in the rejects file once,
#             with its code and message (and the column, when the writer knows it);
#   restart   killed between writing a chunk and committing it, twice, then
#             restarted: every row once, every reject once, and the
#             repository's counters agree;
#   fence     a run frozen past its lease and taken over by another host
#             cannot commit when it wakes up, and adds nothing.
source "$(dirname "$0")/lib.sh"
command -v unshare > /dev/null || fail "unshare (util-linux) is needed to pose as another host"
unshare -u true 2> /dev/null || fail "unshare --uts is not permitted here: the test needs a second host name"
ROWS=2000
# Every 100th record becomes a value the writer refuses: 'bad' made invalid
# UTF-8 by the processor (PostgreSQL and text files refuse it, 22021; the
# SQLite fixture's CHECK refuses it, 23514). Every 250th has a field too many
# (the reader's reject, NS_FIELD_COUNT).
python3 - "$ROWS" > in.csv <<'PY'
import sys
print("id,v")
for i in range(1, int(sys.argv[1]) + 1):
    if i % 250 == 0:
        print(f"{i},x,extra")
    else:
        print(f"{i},{'bad' if i % 100 == 0 else 'v' + str(i)}")
PY
GOOD=$(python3 -c "print(sum(1 for i in range(1, $ROWS + 1) if i % 250 and i % 100))")
WRITER_BAD=$(python3 -c "print(sum(1 for i in range(1, $ROWS + 1) if i % 250 and not i % 100))")
READER_BAD=$((ROWS / 250))

# ------------------------------------------------------------ fixtures
# fixture NAME setup | writer | readback: the target made empty, the job
# file's writer section, the ids the target holds (one per line, sorted).
# table_sqlite and table_pg write table k of their database; file_csv and
# file_jsonl write exp/c.csv and exp/c.jsonl.
fixture() {
    case $1 in
    table_*)
        if [ "$1" == table_pg ]; then export TARGET_URL=$PG_TARGET; else export TARGET_URL="sqlite:$T/target.db"; fi
        case $2 in
        setup)
            db_sql "$TARGET_URL" "DROP TABLE IF EXISTS k"
            db_sql "$TARGET_URL" "DROP TABLE IF EXISTS nightshift_checkpoint"
            db_sql "$TARGET_URL" "CREATE TABLE k (id INTEGER NOT NULL, v TEXT CHECK (v NOT LIKE 'bad%'))"
            ;;
        writer) echo "table: {connection: target, name: k}" ;;
        readback) db_sql "$TARGET_URL" "SELECT id FROM k ORDER BY id" ;;
        esac
        ;;
    file_*)
        export TARGET_URL="sqlite:$T/unused.db"
        local out="exp/c.${1#file_}"
        case $2 in
        setup) rm -rf exp ;;
        writer) echo "file: {path: $out}" ;;
        readback) # the ids of the published file; nothing when it is not there
            [ -f "$out" ] || return 0
            python3 - "$out" <<'PY'
import csv, json, sys
path = sys.argv[1]
if path.endswith(".jsonl"):
    ids = [json.loads(l)["id"] for l in open(path, encoding="utf-8")]
else:
    rows = list(csv.reader(open(path, encoding="utf-8", newline="")))
    assert rows[0] == ["id", "v"], rows[0]
    ids = [r[0] for r in rows[1:]]
print("\n".join(sorted(ids, key=int)))
PY
            ;;
        esac
        ;;
    http_*) # ns-receiver on loopback, one for the test; --dedupe answers
        # 409 to a key it has answered 2xx: the receiver's side of an
        # at-least-once writer (a chunk sent again on restart, or by a run
        # fenced off, has the same keys), so "every row once" is what the
        # receiver accepted
        export TARGET_URL="sqlite:$T/unused.db"
        if [ ! -s recv.port ]; then
            "${NS_RECEIVER:?set NS_RECEIVER}" --dedupe --port-file recv.port --record recv.jsonl 2> recv.log &
            for _ in $(seq 100); do [ -s recv.port ] && break; sleep 0.05; done
            [ -s recv.port ] || fail "ns-receiver did not start"
        fi
        case $2 in
        setup) : > recv.jsonl ;;
        writer)
            echo "http: {url: \"http://127.0.0.1:$(cat recv.port)/k/\${item.id}\", body: '{\"id\": \${item.id|json}, \"v\": \${item.v|json}}', concurrency: 4, success: [200, 409]}"
            ;;
        readback)
            python3 - recv.jsonl <<'PY'
import json, sys
ids = [json.loads(json.loads(l)["body"])["id"] for l in open(sys.argv[1]) if json.loads(l)["status"] == 200]
print("\n".join(sorted(ids, key=int)))
PY
            ;;
        esac
        ;;
    *) fail "no fixture $1" ;;
    esac
}
# The fixtures of each registered writer.
declare -A FIXTURES=([table]="table_sqlite table_pg" [file]="file_csv file_jsonl" [http]="http_receiver")

writers=$("$NS" validate --plugins | awk '$1 == "writer" {print $2}')
[ -n "$writers" ] || fail "validate --plugins lists no writer"
for w in $writers; do
    [ -n "${FIXTURES[$w]:-}" ] || fail "writer '$w' is registered but has no contract fixture here: add one"
done
PG_TARGET=$(pg_db ns_contract_target)
fixture http_receiver setup # starts the receiver here, not in a $(...)

contract_job() { # the job file for fixture $1, as contract.yaml
    {
        echo "job: contract"
        echo "params:"
        echo "  how: {type: string, default: ''}"
        echo "connections:"
        echo "  target: \"\${env.TARGET_URL}\""
        echo "steps:"
        echo "  - name: load"
        echo "    chunk: 100"
        echo "    skip: {limit: 1000}"
        echo "    rejects: \"rejects-\${params.how}/\${execution.id}.csv\""
        echo "    reader: {csv: {path: in.csv}}"
        echo "    processor:"
        echo "      lua: |"
        echo "        function process(item)"
        echo "          if item.v == 'bad' then item.v = 'bad\\255' end"
        echo "          return item"
        echo "        end"
        echo "    writer: {$(fixture "$1" writer)}"
    } > contract.yaml
}

check_result() { # check_result FIXTURE HOW: every good row once, every reject once
    local got
    got=$(fixture "$1" readback | paste -sd, -)
    local want
    want=$(python3 -c "print(','.join(str(i) for i in range(1, $ROWS + 1) if i % 250 and i % 100))")
    [ "$got" == "$want" ] || fail "$1 ($2): the target holds $(echo "$got" | tr , '\n' | grep -c . || true) rows, want $GOOD, each once"
    python3 - "rejects-$2" "$ROWS" "$1 ($2)" <<'PY' || exit 1
import csv, glob, sys
folder, n, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
got = {}
for f in glob.glob(folder + "/*.csv"):
    for r in csv.DictReader(open(f, encoding="utf-8", newline="")):
        got.setdefault(int(r["line"]), []).append(r)
want_w = {i + 1 for i in range(1, n + 1) if i % 250 and not i % 100}   # line = id + 1
want_r = {i + 1 for i in range(1, n + 1) if not i % 250}
dup = [l for l, rs in got.items() if len(rs) > 1]
assert not dup, f"{what}: rejected more than once: lines {dup[:5]}"
assert set(got) == want_w | want_r, f"{what}: rejects {sorted(set(got) ^ (want_w | want_r))[:5]} differ"
for l in want_w:
    r = got[l][0]
    # The column when the writer knows it (PostgreSQL's COPY does not say).
    assert r["code"] in ("22021", "23514") and r["column"] in ("v", ""), f"{what}: line {l}: {r}"
    assert r["message"], f"{what}: line {l}: no message"
for l in want_r:
    assert got[l][0]["code"] == "NS_FIELD_COUNT", f"{what}: line {l}: {got[l][0]}"
PY
}

counters() { # counters EXECUTION: read written filter skips(read process write)
    show_eval "$1" "' '.join(str(sum(s[k + '_count'] for s in d['steps'])) for k in ('read', 'write', 'filter', 'read_skip', 'process_skip', 'write_skip'))"
}

state() { awk '{print $3}' "/proc/$1/stat" 2> /dev/null || echo gone; }

for w in $writers; do
    for f in ${FIXTURES[$w]}; do
        export NIGHTSHIFT_REPOSITORY="sqlite:$T/repo-$f.db"
        rm -rf rejects-*
        contract_job "$f"

        # counters and rejects, one uninterrupted run
        fixture "$f" setup
        expect_exit 0 "$NS" run contract.yaml how=plain
        id=$("$NS" list --json --limit 1 | python3 -c "import json, sys; print(json.load(sys.stdin)[0]['id'])")
        read -r r wr fl rs ps ws <<< "$(counters "$id")"
        assert_eq "$r" "$ROWS" "$f: read"
        assert_eq "$wr" "$GOOD" "$f: written"
        assert_eq "$ws" "$WRITER_BAD" "$f: write skips (the writer's refusals)"
        assert_eq "$rs" "$READER_BAD" "$f: read skips"
        assert_eq "$((wr + fl + rs + ps + ws))" "$r" "$f: the counters reconcile"
        check_result "$f" plain

        # restart: killed twice between writing a chunk and committing it
        fixture "$f" setup
        expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=4 "$NS" run contract.yaml how=restart
        expect_exit 98 env NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT=11 "$NS" run contract.yaml how=restart
        expect_exit 0 "$NS" run contract.yaml how=restart
        expect_err "resuming after chunk 10"
        check_result "$f" restart
        written=$(db_sql "$NIGHTSHIFT_REPOSITORY" "SELECT sum(s.write_count) FROM ns_step_execution s
            JOIN ns_job_param p ON p.execution_id = s.execution_id AND p.name = 'how' WHERE p.value = 'restart'")
        assert_eq "$written" "$GOOD" "$f: rows the repository counts written over the restarts"

        # fence: A freezes after its second commit on host "elsewhere";
        # past the lease B takes over and completes; A wakes up and fails.
        fixture "$f" setup
        export NIGHTSHIFT_LEASE=1
        env NIGHTSHIFT_TEST_PAUSE_AFTER_COMMIT=2 unshare -u sh -c 'hostname elsewhere && exec "$0" "$@"' \
            "$NS" run contract.yaml how=fence > a.out 2> a.err &
        a=$!
        for _ in $(seq 200); do
            [ "$(state $a)" = T ] && break
            [ "$(state $a)" = gone ] && { cat a.err >&2; fail "$f: run A ended before it froze"; }
            sleep 0.05
        done
        [ "$(state $a)" = T ] || fail "$f: run A never froze"
        sleep 1.5
        expect_exit 0 timeout -k 5 60 "$NS" run contract.yaml how=fence
        expect_err "resuming after chunk 2"
        kill -CONT $a
        rc=0; wait $a || rc=$?
        [ $rc != 0 ] || fail "$f: the woken run A ended with success"
        grep -qE "has taken this job instance over|server closed the connection" a.err ||
            { cat a.err >&2; fail "$f: run A did not report the takeover"; }
        unset NIGHTSHIFT_LEASE
        check_result "$f" fence
        if [ -d exp ] && [ "$(ls exp | grep -vc '^c\.' || true)" != 0 ]; then
            fail "$f: files left beside the output: $(ls exp)"
        fi
        echo "$f: counters, rejects, restart and fence hold"
    done
done

#!/usr/bin/env bash
# Each command takes its own options (issue 21): another command's option is
# bad usage that names both, not silently taken (run --dry-run used to run
# the job for real, abandon --dry-run to abandon it); numbers are whole
# numbers or refused; recover --dry-run neither creates nor migrates a
# repository; help --help is help; a misspelt command or option gets a
# suggestion.
source "$(dirname "$0")/lib.sh"

export TARGET_URL="sqlite:$T/t.db"
sqlite3 "$T/t.db" "CREATE TABLE k (id INTEGER PRIMARY KEY, v INTEGER)"
load_job job.yaml opts k
printf 'id,v\n1,1\n2,2\n3,3\n' > in.csv

# --- another command's option: exit 2, nothing done -------------------------
expect_exit 2 "$NS" run job.yaml file=in.csv --dry-run
expect_err "'--dry-run' is not an option of 'run'"
[ ! -e "$T/repo.db" ] || fail "run --dry-run touched the repository"
assert_eq "$(sqlite3 "$T/t.db" 'SELECT count(*) FROM k')" 0 "run --dry-run loaded rows"
expect_exit 0 "$NS" run job.yaml file=in.csv
assert_eq "$(sqlite3 "$T/t.db" 'SELECT count(*) FROM k')" 3 "the run without --dry-run"
# a FAILED execution to abandon: a bad file
printf 'id,v\n1,x\n' > bad.csv
expect_exit 1 "$NS" run job.yaml file=bad.csv
id=$("$NS" list --json | python3 -c "import json,sys; print([e['id'] for e in json.load(sys.stdin) if e['status'] == 'FAILED'][0])")
expect_exit 2 "$NS" abandon "$id" --dry-run
expect_err "'--dry-run' is not an option of 'abandon'"
assert_eq "$(show_field "$id" "['status']")" FAILED "abandon --dry-run abandoned the execution"
expect_exit 2 "$NS" list --next
expect_err "'--next' is not an option of 'list'"
expect_exit 2 "$NS" list --with-files
expect_err "'--with-files' is not an option of 'list'"
expect_exit 2 "$NS" show "$id" --dry-run
expect_exit 2 "$NS" validate job.yaml --repository sqlite:x.db
expect_err "'--repository' is not an option of 'validate'"
expect_exit 2 "$NS" schedule job.yaml --limit 3
expect_exit 2 "$NS" stop "$id" --json
for c in "run job.yaml" "restart 1" "stop 1" "abandon 1" "recover" "purge --keep-last 1" \
    "list" "show 1" "schedule job.yaml" "scheduler job.yaml" "validate job.yaml"; do
    # shellcheck disable=SC2086
    expect_exit 2 "$NS" $c --frobnicate
    expect_err "unknown option --frobnicate"
done
expect_exit 2 "$NS" list --limt 3
expect_err "unknown option --limt (did you mean --limit?)"

# Every option a command's --help lists (its option lines, at column 3) is one it
# takes (the help text and the option table are two lists: they must agree;
# prose may name another command's option, "start another with --next").
for c in run restart stop abandon recover purge list show schedule scheduler validate; do
    for opt in $("$NS" "$c" --help | grep -E '^  [^ ]' | grep -o -- '--[a-z][a-z-]*' | sort -u); do
        [ "$opt" = --help ] && continue
        "$NS" "$c" "$opt" > /dev/null 2> opt.err || true
        if grep -q "is not an option of\|unknown option" opt.err; then
            fail "$c --help names $opt, which $c refuses: $(cat opt.err)"
        fi
    done
done

# --- numbers are whole numbers ---------------------------------------------
for bad in 5x " 5" +5 -5 0 "" 1e3 0x10 99999999999999999999; do
    expect_exit 2 "$NS" list --limit "$bad"
    expect_err "--limit takes a whole number"
done
expect_exit 0 "$NS" list --limit 5
for bad in 2x 0 -1 10001; do
    expect_exit 2 "$NS" schedule job.yaml --count "$bad"
    expect_err "--count takes a whole number"
done
for bad in 3x 0; do
    expect_exit 2 "$NS" purge --keep-last "$bad"
    expect_err "--keep-last takes a whole number"
done
expect_exit 2 "$NS" run job.yaml file=in.csv --tick 12ab
expect_err "--tick"
for bad in 1x " 1" +1 0 -1 0x1; do
    expect_exit 2 "$NS" show "$bad"
    expect_err "is not an execution id"
done

# --- recover --dry-run reads only -------------------------------------------
expect_exit 1 "$NS" recover --dry-run --repository "sqlite:$T/none.db"
[ ! -e "$T/none.db" ] || fail "recover --dry-run created a repository"
expect_exit 0 "$NS" recover --dry-run
chmod a-w "$T/repo.db"
if [ "$(id -u)" != 0 ]; then # root writes whatever the mode
    expect_exit 0 "$NS" recover --dry-run
fi
chmod u+w "$T/repo.db"

# --- help ---------------------------------------------------------------------
expect_exit 0 "$NS" help --help
grep -q "^usage: nightshift COMMAND" "$T/out" || fail "help --help: $(cat "$T/out")"
expect_exit 0 "$NS" help help
expect_exit 2 "$NS" lst
expect_err "unknown command 'lst' (did you mean list?)"
expect_exit 2 "$NS" schedul job.yaml
expect_err "did you mean schedule?"
expect_exit 2 "$NS" help shwo
expect_err "did you mean show?"
expect_exit 2 "$NS" frobnicate
grep -q "did you mean" "$T/err" && fail "a suggestion for a word like no command: $(cat "$T/err")"
echo "cli options: per-command tables, strict numbers, read-only recover --dry-run, help"

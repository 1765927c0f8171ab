#!/usr/bin/env bash
# schedule: in job files (every key checked at validate, errors naming the
# line and key) and `nightshift schedule` (next fire times in the zone and in
# UTC, DST gaps and repeats flagged, --json instants with offsets, folders).
source "$(dirname "$0")/lib.sh"

# job NAME SCHEDULE-MAPPING [MORE-ROOT-KEYS]: a one-step job file.
job() {
    cat > "$1.yaml" <<EOF2
job: $1
params:
  day: {type: date, default: yesterday}
  at: {type: timestamp, default: "2024-01-01T00:00:00"}
  n: {type: int, default: 1}
connections:
  db: "sqlite:$T/t.db"
steps:
  - name: s
    sql: {connection: db, script: "select 1"}
schedule: $2
${3:-}
EOF2
}

# --- every key, and its errors
job ok '{cron: "30 2 * * *", timezone: America/New_York, params: {day: scheduled, at: scheduled, n: 7}, misfire: {policy: catch_up, max: 3}, overlap: queue_one, dst: {gap: shift, repeat: both}, deadline: 2h, jitter: 10s}'
expect_exit 0 "$NS" validate ok.yaml
grep -qF 'scheduled "30 2 * * *" in America/New_York' "$T/out" || fail "validate does not name the schedule"
check_bad() { # SCHEDULE MESSAGE
    job bad "$1"
    expect_exit 2 "$NS" validate bad.yaml
    expect_err "bad.yaml:11: $2"
}
check_bad '{cron: "61 * * * *"}' 'schedule.cron: "61 * * * *": minute 61 is out of range 0-59'
check_bad '{cron: "0 3 * *"}' 'schedule.cron: "0 3 * *": 4 fields: give 5'
check_bad '{cron: "0 3 30 2 *"}' 'schedule.cron: "0 3 30 2 *": never fires'
check_bad '{cron: "@reboot"}' 'schedule.cron: "@reboot": unknown "@reboot"'
check_bad '{timezone: UTC}' 'schedule.cron: is required'
check_bad '{cron: "0 3 * * *", timezone: Mars/Base}' 'schedule.timezone: time zone "Mars/Base": no such zone'
check_bad '{cron: "0 3 * * *", timezone: "../../../etc/passwd"}' 'schedule.timezone: time zone "../../../etc/passwd": not a zone name'
check_bad '{cron: "0 3 * * *", timezone: Europe}' 'schedule.timezone: time zone "Europe": a folder of zones, not a zone'
check_bad '{cron: "0 3 * * *", timezone: asia/seoul}' 'schedule.timezone: time zone "asia/seoul": no such zone (/usr/share/zoneinfo/asia/seoul); did you mean Asia/Seoul?'
check_bad '{cron: "0 3 * * *", misfire: sometimes}' 'schedule.misfire: must be skip, run_once or catch_up'
check_bad '{cron: "0 3 * * *", misfire: {policy: skip, max: 3}}' 'schedule.misfire.max: is for policy: catch_up only'
check_bad '{cron: "0 3 * * *", misfire: {policy: catch_up, max: 0}}' 'schedule.misfire.max: must be a positive integer'
check_bad '{cron: "0 3 * * *", overlap: sometimes}' 'schedule.overlap: must be forbid, queue_one or allow'
check_bad '{cron: "0 3 * * *", dst: {gap: later}}' 'schedule.dst.gap: must be next, shift or skip'
check_bad '{cron: "0 3 * * *", dst: {repeat: twice}}' 'schedule.dst.repeat: must be first, last or both'
check_bad '{cron: "0 3 * * *", dst: {fold: 1}}' 'schedule.dst.fold: unknown key'
check_bad '{cron: "0 3 * * *", deadline: 0s}' 'schedule.deadline: must be from 1s'
check_bad '{cron: "0 3 * * *", deadline: soon}' 'schedule.deadline: must be a duration'
check_bad '{cron: "0 3 * * *", jitter: 2m, deadline: 1m}' 'schedule.jitter: must be shorter than the deadline'
check_bad '{cron: "0 3 * * *", params: {nope: 1}}' 'schedule.params.nope: no such parameter in params'
check_bad '{cron: "0 3 * * *", params: {day: tomorrow}}' "schedule.params.day: 'tomorrow' is not a date (YYYY-MM-DD, today, yesterday or scheduled)"
check_bad '{cron: "0 3 * * *", params: {n: scheduled}}' "schedule.params.n: 'scheduled' is not an integer"
check_bad '{cron: "0 3 * * *", params: {n: "${env.HOME}"}}' 'schedule.params.n: takes a value, not a ${...} reference'
check_bad '{cron: "0 3 * * *", colour: red}' 'schedule.colour: unknown key'
check_bad '"0 3 * * *"' 'schedule: must be a mapping'

# --- notify: each kind, and its errors
job n1 '{cron: "@daily"}' 'notify:
  - slack: {webhook: "${env.SLACK_WEBHOOK}"}
    on: [failed, recovered, still_failing]
    every: 3
  - webhook: {url: "http://127.0.0.1:1/h", headers: {Authorization: "Bearer ${env.TOKEN}"}}
  - command: ["/bin/cat", "${job.name}"]
    timeout: 5s'
expect_exit 0 "$NS" validate n1.yaml
check_notify() { # NOTIFY-YAML MESSAGE
    job nb '{cron: "@daily"}' "notify: $1"
    expect_exit 2 "$NS" validate nb.yaml
    expect_err "$2"
}
check_notify '[{slack: {webhook: "x"}, webhook: {url: "y"}}]' 'notify[0]: needs exactly one of slack:, webhook: or command:'
check_notify '[{on: [failed]}]' 'notify[0]: needs exactly one of'
check_notify '[{slack: {}}]' 'notify[0].slack.webhook: is required'
check_notify '[{slack: {webhook: "ftp://h/x"}}]' 'notify[0].slack.webhook: must be an http:// or https:// URL'
check_notify '[{webhook: {url: "file:///etc/passwd"}}]' 'notify[0].webhook.url: must be an http:// or https:// URL'
check_notify '[{slack: {webhook: "x", channel: "#a"}}]' 'notify[0].slack.channel: unknown key'
check_notify '[{webhook: {url: "${params.day}"}}]' 'notify[0].webhook.url: may use ${env.NAME} and ${job.name} only'
check_notify '[{webhook: {url: "http://x", headers: {A: "${item.id}"}}}]' 'may use ${env.NAME} and ${job.name} only'
check_notify '[{command: "/bin/cat"}]' 'notify[0].command: must be a list'
check_notify '[{command: ["/bin/echo", "token=${env.HOME}"]}]' 'notify[0].command[1]: no ${env.NAME} in a command'"'"'s arguments'
check_notify '[{command: ["/bin/cat"], on: [exploded]}]' 'notify[0].on: must be started, completed, completed_with_skips, failed, still_failing, recovered or missed'
check_notify '[{command: ["/bin/cat"], every: 2}]' 'notify[0].every: is for still_failing'
check_notify '[{command: ["/bin/cat"], timeout: 1h}]' 'notify[0].timeout: must be from'
check_notify '{slack: {webhook: x}}' 'notify: must be a non-empty list'

# --- nightshift schedule: New York's 2024 changes under each policy
job ny '{cron: "30 2 * * *", timezone: America/New_York}'
expect_exit 0 "$NS" schedule ny.yaml --from 2024-03-09T12:00:00Z --count 2
grep -qF 'cron "30 2 * * *" in America/New_York; misfire run_once, overlap forbid, deadline 1h, dst gap next / repeat first' "$T/out" ||
    { cat "$T/out"; fail "the defaults are not shown"; }
grep -qF '2024-03-10 03:00:00 EDT   (-04:00)   2024-03-10 07:00:00 UTC   02:30:00 does not exist (DST gap): fires when the gap ends (dst.gap: next)' "$T/out" ||
    { cat "$T/out"; fail "the gap is not flagged"; }
grep -qF '2024-03-11 02:30:00 EDT' "$T/out" || fail "the day after the gap"
job nyshift '{cron: "30 2 * * *", timezone: America/New_York, dst: {gap: shift}}'
expect_exit 0 "$NS" schedule nyshift.yaml --from 2024-03-09T12:00:00Z --count 1
grep -qF '2024-03-10 03:30:00 EDT' "$T/out" || { cat "$T/out"; fail "gap: shift"; }
job nyskip '{cron: "30 2 * * *", timezone: America/New_York, dst: {gap: skip}}'
expect_exit 0 "$NS" schedule nyskip.yaml --from 2024-03-09T12:00:00Z --count 1
grep -qF '2024-03-11 02:30:00 EDT' "$T/out" || { cat "$T/out"; fail "gap: skip"; }
job nyboth '{cron: "30 1 * * *", timezone: America/New_York, dst: {repeat: both}}'
expect_exit 0 "$NS" schedule nyboth.yaml --from 2024-11-02T12:00:00Z --count 3 --json
python3 - "$T/out" <<'PY' || fail "schedule --json (repeat: both)"
import json, sys
from datetime import datetime
d = json.load(open(sys.argv[1]))
n = d[0]["next"]
assert [f["at"] for f in n] == ["2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00",
                                "2024-11-04T01:30:00-05:00"], n
assert [f["utc"] for f in n] == ["2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z", "2024-11-04T06:30:00Z"], n
assert [f["in_repeat"] for f in n] == [True, True, False] and not any(f["in_gap"] for f in n)
for f in n:  # each instant and its offset agree
    assert datetime.fromisoformat(f["at"]) == datetime.fromisoformat(f["utc"].replace("Z", "+00:00"))
assert d[0]["timezone"] == "America/New_York" and d[0]["dst"] == {"gap": "next", "repeat": "both"}
assert d[0]["deadline_seconds"] == 3600 and d[0]["misfire"] == "run_once" and d[0]["overlap"] == "forbid"
PY
# Lord Howe's half-hour change, an elapsed expression: every 15 minutes, 15 minutes apart.
job lh '{cron: "*/15 * * * *", timezone: Australia/Lord_Howe}'
expect_exit 0 "$NS" schedule lh.yaml --from 2024-10-05T15:00:00Z --count 6 --json
python3 - "$T/out" <<'PY' || fail "elapsed expression across Lord Howe's change"
import json, sys
from datetime import datetime
n = [datetime.fromisoformat(f["at"]) for f in json.load(open(sys.argv[1]))[0]["next"]]
gaps = {(b - a).total_seconds() for a, b in zip(n, n[1:])}
assert gaps == {900.0}, (n, gaps)
assert {f.utcoffset().total_seconds() for f in n} == {37800.0, 39600.0}, n  # +10:30 and +11:00
PY
# Seoul: no DST, always +09:00; default UTC zone shown.
job seoul '{cron: "0 3 * * *", timezone: Asia/Seoul}'
job utc '{cron: "@hourly"}'
expect_exit 0 "$NS" schedule seoul.yaml utc.yaml --from "2026-12-02T17:00:00+00:00" --count 2
grep -qF '2026-12-03 03:00:00 KST   (+09:00)   2026-12-02 18:00:00 UTC' "$T/out" || { cat "$T/out"; fail "Seoul"; }
grep -qF 'cron "@hourly" in UTC' "$T/out" || { cat "$T/out"; fail "UTC by default"; }
grep -qF '2026-12-02 18:00:00 UTC ' "$T/out" || { cat "$T/out"; fail "UTC hourly"; }
# A job without a schedule, named: said; a folder: only the scheduled jobs,
# an invalid file reported (exit 2) and the others still shown.
mkdir jobs
cp seoul.yaml utc.yaml jobs/
sed '/^schedule:/d' seoul.yaml | sed 's/^job: seoul/job: plain/' > jobs/plain.yaml
echo "job: [broken" > jobs/broken.yml
echo "not a job" > jobs/notes.txt
expect_exit 2 "$NS" schedule jobs --count 1
grep -q '^seoul (jobs/seoul.yaml)' "$T/out" && grep -q '^utc (jobs/utc.yaml)' "$T/out" || { cat "$T/out"; fail "folder"; }
grep -q plain "$T/out" && fail "a folder lists a job without a schedule"
expect_err "jobs/broken.yml"
expect_exit 0 "$NS" schedule jobs/plain.yaml
grep -qF "plain (jobs/plain.yaml): no schedule" "$T/out" || fail "a named job without a schedule"
# Usage errors.
expect_exit 2 "$NS" schedule
expect_err "name job files or folders"
expect_exit 2 "$NS" schedule seoul.yaml --count 0
expect_err "--count takes a whole number from 1 to 10000"
expect_exit 2 "$NS" schedule seoul.yaml --from yesterday
expect_err "--from: 'yesterday' is not a time"
expect_exit 2 "$NS" schedule seoul.yaml --from 2024-13-01
expect_exit 2 "$NS" schedule missing.yaml
expect_err "missing.yaml"
# The process's TZ changes nothing.
expect_exit 0 "$NS" schedule ny.yaml --from 2024-03-09T12:00:00Z --count 3 --json
cp "$T/out" plain.json
TZ=Asia/Kolkata expect_exit 0 "$NS" schedule ny.yaml --from 2024-03-09T12:00:00Z --count 3 --json
cmp -s plain.json "$T/out" || fail "TZ changed the fire times"
# A zone file the tzdata directory holds is read from $TZDIR (a tzdata update, or a test's own).
mkdir -p zi/Test
cp /usr/share/zoneinfo/Asia/Seoul zi/Test/Zone
job tz '{cron: "0 3 * * *", timezone: Test/Zone}'
TZDIR=$T/zi expect_exit 0 "$NS" schedule tz.yaml --from 2026-12-02T17:00:00Z --count 1
grep -qF '2026-12-03 03:00:00 KST' "$T/out" || { cat "$T/out"; fail "TZDIR"; }
printf 'TZif2\0\0\0' > zi/Test/Zone
TZDIR=$T/zi expect_exit 2 "$NS" validate tz.yaml
expect_err 'time zone "Test/Zone": not a TZif file, or a damaged one'
echo "schedule: ok"

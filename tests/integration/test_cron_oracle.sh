#!/usr/bin/env bash
# The zone and cron code against independent oracles (tests/oracle/cron_oracle.py):
# glibc's zdump for every zone of the system's tzdata from 1900 to 2100,
# Debian's python3-croniter for the next fire times of thousands of random
# expressions away from DST changes, and a minute-by-minute walk with
# Python's zoneinfo for every gap and repeat policy around the changes of
# Europe/Berlin, America/New_York, Australia/Lord_Howe and Asia/Seoul.
source "$(dirname "$0")/lib.sh"
: "${NS_CRONTOOL:?set NS_CRONTOOL to the ns-crontool binary}"
command -v zdump > /dev/null || fail "zdump is needed (libc-bin)"
/usr/bin/python3 -c "import croniter" 2> /dev/null ||
    fail "Debian's python3-croniter is needed (scripts/install-deps.sh installs it)"
NS_CRONTOOL=$NS_CRONTOOL /usr/bin/python3 "$NS_SRC/tests/oracle/cron_oracle.py" ||
    fail "the cron or zone code disagrees with an oracle (above)"
echo "cron oracle: ok"

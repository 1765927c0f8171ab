#!/usr/bin/env bash
# Installs the Debian packages nightshift needs to build, test and run its demo,
# only those that are missing. Uses sudo when not root. Prints what it installs.
set -euo pipefail

pkgs=(
    gcc make cmake pkg-config bc         # toolchain; bc for bench/
    clang libclang-rt-14-dev clang-format # sanitizer/libFuzzer build of the tests, format check
    libsqlite3-dev sqlite3               # embedded repository and target; CLI used by tests/bench
    libyaml-dev                          # job files
    libjansson-dev                       # JSON: execution context, --json output
    libpq-dev postgresql                 # PostgreSQL client; a server for the tests
    libmariadb-dev mariadb-server-core mariadb-client-core # MariaDB/MySQL client; a server and the mariadb CLI for the tests
    liblua5.4-dev                        # Lua processors
    libxxhash-dev                        # input fingerprints for restarts (XXH3)
    libcurl4-openssl-dev                 # the http writer
    libmicrohttpd-dev                    # ns-receiver: the HTTP receiver of tests and examples
    libcmocka-dev                        # unit tests
    procps python3                       # integration tests: ps, data generators
    python3-croniter tzdata              # tests: an oracle for cron fire times; zones (zdump)
    groff-base man-db                    # tests: the manual page renders; man finds it
)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

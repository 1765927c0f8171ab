#!/usr/bin/env bash
# pg-ctl.sh start|stop STATE_DIR - a throwaway PostgreSQL server for the tests.
#
# start: initdb into a temporary directory, listen on a Unix socket only (no
# TCP), write the server's URL to STATE_DIR/url. As root, the server runs as
# the `postgres` system user (initdb refuses root). stop: stop it and remove
# everything; ctest runs it as a fixture cleanup, so even after failures.
# NS_PG_PORT picks the port (default 54329); NS_PG_TCP=1 adds 127.0.0.1 with
# password authentication.
set -euo pipefail
cmd=${1:?start|stop} state=${2:?state directory}
port=${NS_PG_PORT:-54329}

bindir=$(pg_config --bindir 2>/dev/null || true)
if [ ! -x "$bindir/initdb" ]; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
[ -x "$bindir/initdb" ] || { echo "pg-ctl: no PostgreSQL server binaries (initdb) found; run scripts/install-deps.sh" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
    [ -f "$state/dir" ] || return 0
    local dir
    dir=$(cat "$state/dir")
    if [ -d "$dir/data" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop > /dev/null 2>&1 || true
    fi
    rm -rf "$dir" "$state"
}

case $cmd in
start)
    stop
    mkdir -p "$state"
    # The socket path must stay short (about 107 bytes), whatever the build dir.
    dir=$(mktemp -d /tmp/nspg.XXXXXX)
    echo "$dir" > "$state/dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    # NS_PG_TCP=1: also listen on 127.0.0.1, where passwords are checked
    # (scram-sha-256); the socket stays trusted for the test's own setup.
    auth=(-A trust) listen="''"
    if [ "${NS_PG_TCP:-0}" = 1 ]; then
        auth=(--auth-local=trust --auth-host=scram-sha-256) listen="'127.0.0.1'"
    fi
    as_owner "$bindir/initdb" -D "$dir/data" "${auth[@]}" -U postgres -E UTF8 --locale=C --no-sync \
        > "$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # fsync off: a test server loses nothing the tests check when a *client* is
    # killed; the benchmarks start their own server with the defaults.
    if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=$listen -c unix_socket_directories='$dir' -c port=$port -c fsync=${NS_PG_FSYNC:-off} -c max_connections=100 -c log_line_prefix='%m [%p] %a '" \
        start > /dev/null; then
        cat "$dir/server.log" >&2
        exit 1
    fi
    echo "postgresql:///postgres?host=$dir&port=$port&user=postgres" > "$state/url"
    echo "pg-ctl: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on $dir (port $port)"
    ;;
stop)
    stop
    echo "pg-ctl: stopped"
    ;;
*)
    echo "usage: pg-ctl.sh start|stop STATE_DIR" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# my-ctl.sh start|stop STATE_DIR - a throwaway MariaDB server for the tests.
#
# start: mariadb-install-db into a temporary directory, listen on a Unix
# socket only (no TCP), write the server's URL to STATE_DIR/url (user root,
# no password: only this user can reach the socket's directory). stop: stop
# it and remove everything; ctest runs it as a fixture cleanup, so even after
# failures. NS_MY_TCP=PORT adds 127.0.0.1:PORT; NS_MY_DURABLE=1 keeps the
# server's durability defaults (a log flush at every commit, the doublewrite
# buffer: the benchmark's); NS_MY_POOL sets the buffer pool (default 64M).
set -euo pipefail
cmd=${1:?start|stop} state=${2:?state directory}

for b in mariadbd mariadb-install-db mariadb; do
    command -v "$b" > /dev/null || [ -x "/usr/sbin/$b" ] ||
        { echo "my-ctl: no $b found; run scripts/install-deps.sh" >&2; exit 1; }
done
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)

stop() {
    [ -f "$state/dir" ] || return 0
    local dir pid
    dir=$(cat "$state/dir")
    if [ -f "$dir/pid" ]; then
        pid=$(cat "$dir/pid")
        kill -9 "$pid" 2> /dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    fi
    rm -rf "$dir" "$state"
}

case $cmd in
start)
    stop
    mkdir -p "$state"
    # The socket path must stay short (about 107 bytes), whatever the build dir.
    dir=$(mktemp -d /tmp/nsmy.XXXXXX)
    chmod 700 "$dir"
    echo "$dir" > "$state/dir"
    user=$(id -un)
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
        --auth-root-authentication-method=normal --skip-test-db > "$dir/install.log" 2>&1 ||
        { cat "$dir/install.log" >&2; exit 1; }
    net=(--skip-networking)
    [ -n "${NS_MY_TCP:-}" ] && net=(--bind-address=127.0.0.1 --port="$NS_MY_TCP")
    # Small buffers and no doublewrite or log flush at commit: a test server
    # loses nothing the tests check when a *client* is killed; the benchmark
    # asks for the defaults.
    durability=(--innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0)
    [ "${NS_MY_DURABLE:-0}" = 1 ] && durability=()
    "$mariadbd" --no-defaults --datadir="$dir/data" --socket="$dir/sock" "${net[@]}" \
        --user="$user" --pid-file="$dir/pid" --log-error="$dir/server.log" \
        --innodb-buffer-pool-size="${NS_MY_POOL:-64M}" --innodb-log-file-size=256M \
        "${durability[@]}" --local-infile=1 \
        --max-connections=200 --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_general_ci > /dev/null 2>&1 &
    for _ in $(seq 300); do
        [ -S "$dir/sock" ] && mariadb --no-defaults -S "$dir/sock" -uroot -e 'SELECT 1' > /dev/null 2>&1 && break
        sleep 0.1
    done
    mariadb --no-defaults -S "$dir/sock" -uroot -e 'SELECT 1' > /dev/null 2>&1 ||
        { echo "my-ctl: the server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
    echo "mysql://root@localhost/mysql?socket=$dir/sock" > "$state/url"
    echo "$dir/sock" > "$state/sock"
    echo "my-ctl: $("$mariadbd" --version | awk '{print $3}') on $dir/sock"
    ;;
stop)
    stop
    echo "my-ctl: stopped"
    ;;
*)
    echo "usage: my-ctl.sh start|stop STATE_DIR" >&2
    exit 2
    ;;
esac

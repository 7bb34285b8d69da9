#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster plus a Redis server, both on loopback.
#
#   bash tests/sandbox.sh start DIR [DBNAME]   (DBNAME defaults to "regression")
#   bash tests/sandbox.sh stop DIR             idempotent
#   bash tests/sandbox.sh env DIR              print the shell exports (source-able)
#
# As root the servers run as the "postgres" user; otherwise as the caller.
# Everything lives in DIR: redis.{pid,log}, pgdata/, postgres.log, sockets, env.
# SANDBOX_PRELOAD overrides shared_preload_libraries (default "redis_sync").
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
export PATH="$PGBIN:$PATH"

if [ "$(id -u)" -eq 0 ]; then
    RUN_USER=${RUN_USER:-postgres}
else
    RUN_USER=$(id -un)
fi
PG_SUPERUSER=postgres

die() { echo "sandbox: $*" >&2; exit 1; }

# Run a command as the run user, from DIR (the caller's cwd may be unreadable).
as_run_user() {
    local dir=$1; shift
    if [ "$(id -u)" -eq 0 ] && [ "$RUN_USER" != root ]; then
        (cd "$dir" && runuser -u "$RUN_USER" -- env PATH="$PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8 "$@")
    else
        (cd "$dir" && "$@")
    fi
}

# Two distinct free loopback TCP ports, space separated.
free_ports() {
    perl -MIO::Socket::INET -e '
        my @s = map { IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                                          Proto => "tcp", Listen => 1, ReuseAddr => 0)
                      or die "bind: $!" } 1..$ARGV[0];
        print join(" ", map { $_->sockport } @s), "\n";' "${1:-2}"
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# wait_gone PID SECONDS
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while pid_alive "$pid"; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.1
    done
}

redis_ping() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

# redis_is_ours DIR PORT: the redis-server started in DIR listens on PORT
# (waits up to 30 s for it; false at once when it exited, e.g. because the
# port was taken)
redis_is_ours() {
    local dir=$1 port=$2 deadline=$((SECONDS + 30)) pid=""
    while [ $SECONDS -lt $deadline ]; do
        [ -s "$dir/redis.pid" ] && pid=$(cat "$dir/redis.pid")
        if [ -n "$pid" ]; then
            [ "$(redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null |
                 sed -n 's/^process_id:\([0-9]*\).*/\1/p')" = "$pid" ] && return 0
            pid_alive "$pid" || return 1
        elif grep -q "Address already in use\|Failed listening" "$dir/redis.log" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    tail -n 30 "$dir/redis.log" >&2 || true
    die "redis-server on port $port did not answer within 30s"
}

stop_sandbox() {
    local dir=$1
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    local pgdata=$dir/pgdata

    # PostgreSQL first: its background worker talks to Redis.
    if [ -f "$pgdata/postmaster.pid" ]; then
        local pgpid
        pgpid=$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null || true)
        if pid_alive "$pgpid"; then
            as_run_user "$dir" pg_ctl stop -D "$pgdata" -m fast -w -t 30 >/dev/null 2>&1 ||
                as_run_user "$dir" pg_ctl stop -D "$pgdata" -m immediate -w -t 30 >/dev/null 2>&1 || true
            if pid_alive "$pgpid"; then
                kill -QUIT "$pgpid" 2>/dev/null || true
                wait_gone "$pgpid" 10 || kill -KILL "$pgpid" 2>/dev/null || true
            fi
        fi
    fi

    # a server restarted on the sandbox's port (tests, benchmarks do that)
    # has another pid: ask whatever listens there to shut down
    if [ -f "$dir/redis.port" ]; then
        redis-cli -h 127.0.0.1 -p "$(cat "$dir/redis.port")" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/redis.pid" ]; then
        local rpid rport=""
        rpid=$(cat "$dir/redis.pid" 2>/dev/null || true)
        [ -f "$dir/redis.port" ] && rport=$(cat "$dir/redis.port")
        if pid_alive "$rpid"; then
            if [ -n "$rport" ]; then
                redis-cli -h 127.0.0.1 -p "$rport" shutdown nosave >/dev/null 2>&1 || true
            fi
            if ! wait_gone "$rpid" 10; then
                kill -TERM "$rpid" 2>/dev/null || true
                wait_gone "$rpid" 10 || kill -KILL "$rpid" 2>/dev/null || true
            fi
        fi
        rm -f "$dir/redis.pid"
    fi
    return 0
}

start_sandbox() {
    local dir=$1 db=${2:-regression}
    [ -n "$dir" ] && [ "$dir" != / ] || die "refusing to use '$dir'"
    case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac

    stop_sandbox "$dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 700 "$dir"
    [ "$(id -u)" -eq 0 ] && chown "$RUN_USER:" "$dir"

    local ports redis_port pg_port attempt
    # --- Redis.  A port found free can be taken by someone else before
    # redis-server binds it (other sandboxes and TAP tests run at the same
    # time); a daemonized redis-server that cannot bind exits quietly, and
    # the PING below would then reach the other server.  So the server must
    # be ours: its pidfile appears only once it listens, and INFO's
    # process_id must name that pid.  Otherwise: new ports, again.
    for attempt in 1 2 3 4 5; do
        ports=$(free_ports 2)
        redis_port=${ports% *}
        pg_port=${ports#* }
        rm -f "$dir/redis.pid" "$dir/redis.log"
        as_run_user "$dir" redis-server --bind 127.0.0.1 --port "$redis_port" \
            --save '' --appendonly no --daemonize yes \
            --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" ||
            die "redis-server failed to start (see $dir/redis.log)"
        if redis_is_ours "$dir" "$redis_port"; then
            break
        fi
        echo "sandbox: port $redis_port was taken before redis-server bound it; trying other ports" >&2
        [ "$attempt" = 5 ] && die "redis-server could not get a port of its own (see $dir/redis.log)"
    done
    echo "$redis_port" >"$dir/redis.port"
    [ "$(id -u)" -eq 0 ] && chown "$RUN_USER:" "$dir/redis.port"

    # --- PostgreSQL
    local pgdata=$dir/pgdata
    if ! as_run_user "$dir" initdb -D "$pgdata" -U "$PG_SUPERUSER" -A trust -E UTF8 \
            --locale=C -N >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    fi
    local preload=${SANDBOX_PRELOAD-redis_sync}
    as_run_user "$dir" tee -a "$pgdata/postgresql.conf" >/dev/null <<EOF

# ---- redis_sync sandbox ----
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$dir'
shared_preload_libraries = '$preload'
redis_sync.redis_url = 'redis://127.0.0.1:$redis_port/0'
max_prepared_transactions = 10
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%m [%p] %q%a@%d '
log_min_messages = info
logging_collector = off
EOF
    as_run_user "$dir" tee "$pgdata/pg_hba.conf" >/dev/null <<EOF
local   all  all                trust
host    all  all  127.0.0.1/32  trust
EOF
    if ! as_run_user "$dir" pg_ctl start -D "$pgdata" -w -t 60 -l "$dir/postgres.log" >/dev/null 2>&1; then
        echo "---- tail of $dir/postgres.log ----" >&2
        tail -n 40 "$dir/postgres.log" >&2 || true
        stop_sandbox "$dir"
        die "PostgreSQL failed to start"
    fi
    if [ "$db" != postgres ]; then
        createdb -h 127.0.0.1 -p "$pg_port" -U "$PG_SUPERUSER" "$db" ||
            die "createdb $db failed"
    fi

    {
        printf 'export PGHOST=%q\n' 127.0.0.1
        printf 'export PGPORT=%q\n' "$pg_port"
        printf 'export PGUSER=%q\n' "$PG_SUPERUSER"
        printf 'export PGDATABASE=%q\n' "$db"
        printf 'export REDIS_HOST=%q\n' 127.0.0.1
        printf 'export REDIS_PORT=%q\n' "$redis_port"
        printf 'export REDIS_URL=%q\n' "redis://127.0.0.1:$redis_port/0"
        printf 'export SANDBOX_DIR=%q\n' "$dir"
        printf 'export RUN_USER=%q\n' "$RUN_USER"
    } >"$dir/env"
    chmod 644 "$dir/env"
    echo "sandbox: postgres on 127.0.0.1:$pg_port (db $db), redis on 127.0.0.1:$redis_port, dir $dir" >&2
}

cmd=${1:-}
case "$cmd" in
    start)
        [ $# -ge 2 ] || die "usage: $0 start DIR [DBNAME]"
        start_sandbox "$2" "${3:-regression}"
        ;;
    stop)
        [ $# -ge 2 ] || die "usage: $0 stop DIR"
        stop_sandbox "$2"
        ;;
    env)
        [ $# -ge 2 ] || die "usage: $0 env DIR"
        [ -f "$2/env" ] || die "no sandbox in $2"
        cat "$2/env"
        ;;
    *)
        echo "usage: $0 start DIR [DBNAME] | stop DIR | env DIR" >&2
        exit 2
        ;;
esac

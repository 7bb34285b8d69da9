# shellcheck shell=bash
# bench/lib.sh: what the shell benchmarks share; sourced, never run.
#
#   bench_args NAME HELP "$@"   MODE from --quick (default: $BENCH_MODE, else
#                               full); -h prints HELP (the script's header
#                               line range, e.g. 2,18); anything else is a
#                               usage error naming bench/NAME
#   bench_setup PREFIX          BENCH_DIR, REPO, PGBIN and PATH; WORK, a fresh
#                               directory under /tmp the servers (running as
#                               another user) can read; and the exit trap:
#                               the bench_on_exit commands, then the sandbox
#                               bench_sandbox started is stopped (left running
#                               with BENCH_KEEP=1) and WORK removed
#   bench_on_exit CMD           run CMD (a string, eval'd) at exit, before the
#                               sandbox stops
#   bench_sandbox [--own]       use bench/run.sh's sandbox when it called us
#                               (SANDBOX_DIR set), else start one in $WORK/sb;
#                               --own always starts one; loads its env
#   bench_write_section TITLE TEXT
#                               replace the "## TITLE" section of
#                               bench/RESULTS.md with TEXT (appended when
#                               absent)

bench_args() {
    local name=$1 help=$2 a
    shift 2
    MODE=${BENCH_MODE:-full}
    for a in "$@"; do
        case "$a" in
            --quick) MODE=quick ;;
            -h|--help) sed -n "${help}p" "$0"; exit 0 ;;
            *) echo "bench/$name: unknown argument '$a' (usage: bash bench/$name [--quick])" >&2; exit 2 ;;
        esac
    done
}

BENCH_EXIT_CMDS=()
BENCH_OWN_SANDBOX=0

bench_on_exit() { BENCH_EXIT_CMDS+=("$1"); }

_bench_cleanup() {
    local rc=$? c
    for c in "${BENCH_EXIT_CMDS[@]}"; do
        eval "$c" >/dev/null 2>&1 || true
    done
    if [ "$BENCH_OWN_SANDBOX" = 1 ] && [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: sandbox kept in $WORK/sb (stop: bash tests/sandbox.sh stop $WORK/sb)" >&2
        exit $rc
    fi
    if [ "$BENCH_OWN_SANDBOX" = 1 ]; then
        bash "$REPO/tests/sandbox.sh" stop "$WORK/sb" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit $rc
}

bench_setup() {
    BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
    REPO=$(cd "$BENCH_DIR/.." && pwd)
    PG_MAJOR=${PG_MAJOR:-15}
    export PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
    export PATH="$PGBIN:$PATH"
    WORK=$(mktemp -d "/tmp/redis_sync_$1.XXXXXX")
    chmod 755 "$WORK"   # the servers run as postgres and live in $WORK/sb
    trap _bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_sandbox() {
    if [ "${1:-}" != --own ] && [ -n "${SANDBOX_DIR:-}" ]; then
        return 0
    fi
    BENCH_OWN_SANDBOX=1
    bash "$REPO/tests/sandbox.sh" start "$WORK/sb" bench >"$WORK/sandbox.log" 2>&1 ||
        { cat "$WORK/sandbox.log" >&2; exit 1; }
    # shellcheck disable=SC1091
    . "$WORK/sb/env"
}

# bench_as_user CMD...: CMD as the sandbox's server user (postgres when run
# as root), from $WORK (the caller's directory may be closed to that user)
bench_as_user() {
    local u=${RUN_USER:-$(id -un)}
    if [ "$(id -u)" -eq 0 ] && [ "$u" != root ]; then
        (cd "$WORK" && runuser -u "$u" -- "$@")
    else
        "$@"
    fi
}

# bench_callgrind_redis DIR: a second redis-server under valgrind callgrind
# (dumps DIR/out.PID[.N]); sets CG_DIR, CG_PORT and CG_PID and shuts it down
# on exit; bench_cg_control ARGS is callgrind_control for it (-z zeroes its
# counters, -d dumps them).
# Then points the sandbox's PostgreSQL at it with timeouts for callgrind's
# ~50x slower Redis (reloaded; the settings reach new sessions).
bench_callgrind_redis() {
    local dir=$1
    CG_DIR=$dir
    if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
        echo "bench: valgrind and callgrind_control are needed" >&2
        return 1
    fi
    mkdir -p "$dir"
    chmod 777 "$dir"
    CG_PORT=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1)->sockport')
    bench_on_exit "redis-cli -p $CG_PORT shutdown nosave >/dev/null 2>&1"
    (cd "$dir" && TMPDIR="$dir" exec valgrind --tool=callgrind --callgrind-out-file="$dir/out.%p" \
        redis-server --port "$CG_PORT" --save '' --appendonly no >"$dir/valgrind.log" 2>&1) &
    for _ in $(seq 1 100); do redis-cli -p "$CG_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
    CG_PID=$(redis-cli -p "$CG_PORT" info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
    [ -n "$CG_PID" ] || { echo "bench: redis-server under callgrind did not start" >&2; return 1; }
    psql -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL
ALTER SYSTEM SET redis_sync.redis_url = 'redis://127.0.0.1:$CG_PORT/0';
ALTER SYSTEM SET redis_sync.command_timeout = '300s';
ALTER SYSTEM SET redis_sync.connect_timeout = '60s';
ALTER SYSTEM SET redis_sync.drain_timeout = '600s';
SELECT pg_reload_conf();
SQL
}

bench_cg_control() { TMPDIR="$CG_DIR" callgrind_control "$@" "$CG_PID"; }

bench_write_section() {
    local res="$REPO/bench/RESULTS.md"
    [ -f "$res" ] || echo "# redis_sync benchmark results" >"$res"
    # drop the earlier section (up to the next "## " heading), append the new one
    TITLE=$1 SECTION=$2 perl -0777 -i -pe \
        's/\n## \Q$ENV{TITLE}\E\n.*?(?=\n## |\z)//s; s/\n*\z/\n\n$ENV{SECTION}\n/' "$res"
}

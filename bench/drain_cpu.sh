#!/usr/bin/env bash
# Instructions per drained row of the write-behind drain, counted by
# valgrind's callgrind (which the machine's load does not move): the
# worker's (inclusive of rs_drain_round) and Redis's (the whole server while
# the drain runs).
#
#   PGBIN=... bash bench/drain_cpu.sh [KEYS]     (default 20,000)
#
# Starts a sandbox (tests/sandbox.sh) whose PostgreSQL runs under callgrind
# (--toggle-collect=rs_drain_round: only the drain is counted) and a second
# redis-server under callgrind that it uses; makes bench.pl's table (200,000
# rows of (id int PRIMARY KEY, n bigint), key prefix stats:, default batch
# size), then drains KEYS dirty keys three times (HSET + SADD loaded with
# redis-cli --pipe while the worker is paused, VACUUM before each drain, as
# bench.pl does), each by a new worker (the worker is terminated after its
# drain: its exit writes its counts; start-up costs such as planning are
# counted in every drain).  Redis's counters are zeroed before each drain
# and dumped after it.  Prints the worker's and Redis's instructions per row
# of each drain.  Not part of bench/run.sh (~3 min).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KEYS=${1:-20000}
for tool in valgrind callgrind_control; do
    command -v "$tool" >/dev/null 2>&1 || { echo "drain_cpu: $tool not found" >&2; exit 1; }
done
bench_setup drain_cpu
SB=$WORK
bench_on_exit '[ -f "$SB/sb/pgdata/postmaster.pid" ] && kill -INT "$(head -1 "$SB/sb/pgdata/postmaster.pid")"; sleep 5'
bench_sandbox --own
mkdir -p "$SB/cg"
chmod 777 "$SB/cg"
bench_callgrind_redis "$SB/rcg"
RPID=$CG_PID
rc() { redis-cli -p "$CG_PORT" "$@"; }

psql -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE EXTENSION redis_sync;
CREATE TABLE wb_t (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO wb_t SELECT g, 0 FROM generate_series(1, 200000) g;
VACUUM ANALYZE wb_t;
SELECT redis_sync.write_behind('wb_t', key_prefix => 'stats:', dirty_set => 'stats:dirty');
SQL

# PostgreSQL again, under callgrind: the worker counts rs_drain_round only
bench_as_user "$PGBIN/pg_ctl" -D "$SB/sb/pgdata" -w stop -m fast >/dev/null
bench_as_user env TMPDIR="$SB/cg" valgrind --tool=callgrind --callgrind-out-file="$SB/cg/out.%p" \
    --toggle-collect=rs_drain_round --collect-atstart=no \
    "$PGBIN/postgres" -D "$SB/sb/pgdata" >"$SB/pg.log" 2>&1 &
for _ in $(seq 1 300); do psql -qXAt -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done
# the worker's pid (a new one after each drain: its exit writes its counts)
worker_pid() {
    local pid
    for _ in $(seq 1 600); do
        pid=$(psql -qXAt -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'redis_sync worker' AND datname = current_database() AND pid <> ${1:-0}")
        [ -n "$pid" ] && { echo "$pid"; return 0; }
        sleep 0.5
    done
    echo "drain_cpu: no worker" >&2
    exit 1
}
# the file of a finished callgrind dump
dumped() {
    for _ in $(seq 1 600); do
        [ -f "$1" ] && grep -q '^totals:' "$1" && { echo "$1"; return 0; }
        sleep 0.2
    done
    echo "drain_cpu: no dump $1" >&2
    exit 1
}
OUT=${DRAIN_CPU_OUT:-${TMPDIR:-/tmp}}
WPID=$(worker_pid)
for round in 1 2 3; do
    perl -e 'for my $i (1 .. $ARGV[0]) { my $id = 1 + ($i * 7919) % 200000; my $v = $id % 1000 + $ARGV[1] * 1000;
        printf "*4\r\n\$4\r\nHSET\r\n\$%d\r\nstats:%d\r\n\$1\r\nn\r\n\$%d\r\n%d\r\n*3\r\n\$4\r\nSADD\r\n\$11\r\nstats:dirty\r\n\$%d\r\n%d\r\n",
            length("stats:$id"), $id, length($v), $v, length($id), $id }' "$KEYS" "$round" >"$SB/load.resp"
    psql -qXAt -c 'VACUUM wb_t' -c 'SELECT redis_sync.worker_pause(600000)' >/dev/null
    rc --pipe <"$SB/load.resp" >/dev/null
    bench_cg_control -z >/dev/null
    applied=$(PGOPTIONS='-c redis_sync.flush_timeout=600s' psql -qXAt -c 'SELECT redis_sync.worker_resume()' -c "SELECT redis_sync.flush('wb_t')" | tail -1)
    bench_cg_control -d >/dev/null
    psql -qXAt -c "SELECT pg_terminate_backend($WPID)" >/dev/null
    wf=$(dumped "$SB/cg/out.$WPID")
    rf=$(dumped "$SB/rcg/out.$RPID.$round")
    w=$(awk '/^totals:/ {print $2; exit}' "$wf")
    r=$(awk '/^totals:/ {print $2; exit}' "$rf")
    cp "$wf" "$OUT/drain_cpu.worker.$round"
    cp "$rf" "$OUT/drain_cpu.redis.$round"
    printf 'drain %d: %s rows applied; instructions per row: worker %d, Redis %d\n' \
        "$round" "$applied" $((w / KEYS)) $((r / KEYS))
    WPID=$(worker_pid "$WPID")
done

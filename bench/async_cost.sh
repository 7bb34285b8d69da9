#!/usr/bin/env bash
# redis_sync async delivery: what one commit costs, in CPU and WAL, against an
# unsynced table and bench/'s hand-built PL/pgSQL outbox trigger.
#
#   bash bench/async_cost.sh            full run (~2 min); rewrites the
#                                       "## Async delivery cost" section of bench/RESULTS.md
#   bash bench/async_cost.sh --quick    fewer commits; prints only
#
# Throughput ratios on a shared 2-core machine move by more than the
# differences between the variants (section 1 of RESULTS.md); CPU time and
# WAL bytes per commit move much less.  For each variant (unsynced,
# write_through delivery => 'async', the trigger) a fixed number of
# single-row UPDATEs (pgbench -t, 4 clients, synchronous_commit on) and the
# worker's delivery of what they queued are measured: CPU time of every
# server process (backends through the postmaster's reaped-children time,
# the worker, the other auxiliaries) and of Redis, WAL bytes, and the
# worker's rounds.  Variants alternate, median of 3.
# ASYNC_COST_CLIENTS=N: N clients instead of 4 (prints the same table).
# Run from bench/run.sh (inside its sandbox) or standalone (starts its own
# sandbox with tests/sandbox.sh; the extension must be installed).
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args async_cost.sh 2,19 "$@"
bench_setup bench_acost
RUNS=3
if [ "$MODE" = quick ]; then N=4000; else N=20000; fi
C=${ASYNC_COST_CLIENTS:-4}

if [ -z "${SANDBOX_DIR:-}" ]; then
    bench_sandbox
    # as bench/run.sh sets them: durable commits, no checkpoint during the runs
    psql -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
ALTER SYSTEM SET fsync = on;
ALTER SYSTEM SET max_wal_size = '8GB';
ALTER SYSTEM SET checkpoint_timeout = '30min';
SELECT pg_reload_conf();
CREATE EXTENSION IF NOT EXISTS redis_sync;
SQL
fi
say() { echo "[async_cost] $*" >&2; }
q() { PGOPTIONS='-c client_min_messages=warning' psql -qAtX -v ON_ERROR_STOP=1 -c "$1"; }

PM=$(head -1 "$SANDBOX_DIR/pgdata/postmaster.pid")
RPID=$(cat "$SANDBOX_DIR/redis.pid")
# CPU ticks: the postmaster (with its reaped children: exited backends),
# its live children, Redis
ticks() {
    local t=0 p s
    for p in "$PM" $(pgrep -P "$PM") "$RPID"; do
        read -r -a s 2>/dev/null < "/proc/$p/stat" || continue
        t=$((t + s[13] + s[14] + s[15] + s[16]))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)

PGOPTIONS='-c client_min_messages=warning' psql -qX -v ON_ERROR_STOP=1 -f "$BENCH_DIR/hand_outbox.sql" >/dev/null
PGOPTIONS='-c client_min_messages=warning' psql -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DROP TABLE IF EXISTS ac_base, ac_async, ac_trig;
CREATE TABLE ac_base (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
INSERT INTO ac_base SELECT g, g, 'row number ' || g FROM generate_series(1, 100000) g;
CREATE TABLE ac_async AS SELECT * FROM ac_base;
ALTER TABLE ac_async ADD PRIMARY KEY (id);
CREATE TABLE ac_trig AS SELECT * FROM ac_base;
ALTER TABLE ac_trig ADD PRIMARY KEY (id);
VACUUM ANALYZE ac_base, ac_async, ac_trig;
SELECT redis_sync.write_through('ac_async', key_prefix => 'ac_async:', delivery => 'async', warm => false);
SELECT redis_sync.warm('ac_async');
CREATE TRIGGER hand_outbox_capture AFTER INSERT OR UPDATE OR DELETE ON ac_trig
    FOR EACH ROW EXECUTE FUNCTION hand_outbox_capture('ac_trig:');
SQL
for v in base async trig; do
    printf '\\set id random(1, 100000)\nUPDATE ac_%s SET v = v + 1 WHERE id = :id;\n' "$v" > "$WORK/$v.sql"
done
chmod 644 "$WORK"/*.sql

outbox_empty() {
    local i
    for i in $(seq 1200); do
        [ "$(q 'SELECT count(*) FROM redis_sync.outbox')" = 0 ] && return 0
        sleep 0.05
    done
    echo "bench/async_cost.sh: the outbox did not empty within 60 s" >&2
    exit 1
}

declare -A CPU WAL ROUNDS TPS
VARIANTS=(base async trig)
for r in $(seq $RUNS); do
    # rotate the order each round
    o=("${VARIANTS[@]:$((r % 3))}" "${VARIANTS[@]:0:$((r % 3))}")
    for v in "${o[@]}"; do
        [ "$v" = trig ] && q 'TRUNCATE hand_outbox'
        l0=$(q 'SELECT pg_current_wal_lsn()'); r0=$(q 'SELECT worker_rounds FROM redis_sync.worker_stats'); t0=$(ticks)
        tps=$(PGOPTIONS='-c synchronous_commit=on' pgbench -n -M prepared -c $C -j $C -t $((N / C)) -f "$WORK/$v.sql" 2>&1 |
              sed -n 's/^tps = \([0-9]*\).*/\1/p')
        TPS[$v]+="$tps "
        outbox_empty
        t1=$(ticks); r1=$(q 'SELECT worker_rounds FROM redis_sync.worker_stats')
        wal=$(q "SELECT pg_current_wal_lsn() - '$l0'::pg_lsn")
        CPU[$v]+="$(( (t1 - t0) * 1000000 / HZ / N )) "
        WAL[$v]+="$(( wal / N )) "
        ROUNDS[$v]+="$(echo "scale=3; ($r1 - $r0) / $N" | bc) "
    done
    q 'VACUUM ac_base' ; q 'VACUUM ac_async'; q 'VACUUM ac_trig'; q 'VACUUM redis_sync.outbox'
    say "round $r: cpu us/commit base ${CPU[base]}| async ${CPU[async]}| trigger ${CPU[trig]}(tps ${TPS[base]}| ${TPS[async]}| ${TPS[trig]})"
done
med() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mc=(); mw=(); mr=()
for v in base async trig; do
    mc+=("$(echo "${CPU[$v]}" | med)"); mw+=("$(echo "${WAL[$v]}" | med)"); mr+=("$(echo "${ROUNDS[$v]}" | med)")
done
TABLE=$(cat <<EOF
| per commit (c=$C, sc=on, $N single-row UPDATEs, median of $RUNS) | unsynced | async delivery | PL/pgSQL outbox trigger |
|---|---|---|---|
| CPU of every server process and Redis, µs | ${mc[0]} | ${mc[1]} | ${mc[2]} |
| WAL bytes | ${mw[0]} | ${mw[1]} | ${mw[2]} |
| worker rounds | - | ${mr[1]} | - |
EOF
)
echo "$TABLE"
psql -qX -c 'DROP TABLE ac_base, ac_async, ac_trig, hand_outbox' -c 'DROP FUNCTION hand_outbox_capture()' >/dev/null 2>&1 || true
if [ "$MODE" = full ]; then
    SECTION=$(cat <<EOF
## Async delivery cost

\`bash bench/async_cost.sh\` at ${BENCH_COMMIT:-$(git -C "$REPO" rev-parse --short HEAD)}: what one commit of a single-row UPDATE costs with
async delivery, including the worker's delivery of it, against the same UPDATE unsynced and through the
hand-built PL/pgSQL outbox trigger of section 1 (which only inserts; nothing drains its table).

$TABLE

Per run, CPU µs: unsynced ${CPU[base]}; async ${CPU[async]}; trigger ${CPU[trig]}. Throughput of the same runs
(tps; context only, the machine's load moves it): unsynced ${TPS[base]}; async ${TPS[async]}; trigger ${TPS[trig]}.
EOF
)
    bench_write_section 'Async delivery cost' "$SECTION"
    say "wrote the Async delivery cost section of bench/RESULTS.md"
fi

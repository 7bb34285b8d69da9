#!/usr/bin/env bash
# Redis's cost of the fenced apply script, in instructions (valgrind
# callgrind on redis-server): per row of a bulk UPDATE, per single-row sync
# push, and per op of redis-benchmark -P 16 HSET on the same server (the
# reference of issue 18's "Redis CPU per pushed row" row).  Instructions,
# unlike CPU seconds, do not move with the load of a shared machine; they
# count Redis's user space only (not the kernel's socket work).
#
#   bash bench/fence.sh            10,000 rows, 300 single-row transactions
#   bash bench/fence.sh --quick    2,000 rows, 100 transactions
#
# Needs valgrind (Debian package valgrind); skipped without it.  The
# extension must be installed (make install).  Prints one table; writes
# bench/results/fence.txt.  Called from bench/run.sh.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROWS=10000 TXNS=300
[ "${1:-}" = --quick ] && { ROWS=2000 TXNS=100; }

for tool in valgrind callgrind_control; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench/fence.sh: $tool not found, skipped" >&2; exit 0; }
done

bench_setup fencebench
SB=$WORK
bench_sandbox --own
# a second redis-server, under callgrind, that the sandbox's PostgreSQL uses
bench_callgrind_redis "$SB/cg"
sleep 1
psql -qX -c "CREATE EXTENSION IF NOT EXISTS redis_sync" \
    -c "CREATE TABLE f_wt (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL)" \
    -c "INSERT INTO f_wt SELECT g, g, 'row number ' || g FROM generate_series(1, $ROWS) g" \
    -c "SELECT redis_sync.write_through('f_wt', key_prefix => 'f:', warm => false)" \
    -c "SELECT redis_sync.warm('f_wt')" >/dev/null

# instructions Redis executed while "$@" ran (callgrind zeroed, then dumped)
instructions() {
    bench_cg_control -z >/dev/null 2>&1
    "$@" >/dev/null 2>&1
    bench_cg_control -d >/dev/null 2>&1
    sleep 0.5
    awk '/^(totals|summary):/ {print $2; exit}' "$(ls -t "$SB"/cg/out.* | head -1)"
}

echo "\\set id random(1, $ROWS)
UPDATE f_wt SET v = v + 1 WHERE id = :id;" >"$SB/single.sql"
# the first of each warms up (script compiled, dicts grown); the second counts
for _ in 1 2; do bulk=$(instructions psql -qX -c "UPDATE f_wt SET v = v + 1"); done
for _ in 1 2; do single=$(instructions pgbench -n -c1 -t "$TXNS" -f "$SB/single.sql"); done
for _ in 1 2; do hset=$(instructions redis-benchmark -h 127.0.0.1 -p "$CG_PORT" -P 16 -t hset -n 20000 -r 100000 -q); done

COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$REPO" status --porcelain -- src 2>/dev/null)" ] || COMMIT="$COMMIT (with uncommitted changes in src/)"
RATIO=$(echo "$bulk * 20000 / $ROWS / $hset" | bc -l | xargs printf '%.2f')
TABLE="| measure | Redis instructions |
|---|---:|
| one UPDATE of $ROWS write-through rows: per pushed row | $((bulk / ROWS)) |
| single-row UPDATE, sync push (pgbench -c 1 -t $TXNS): per transaction | $((single / TXNS)) |
| redis-benchmark -P 16 -t hset -n 20000: per op | $((hset / 20000)) |
| per pushed row / per redis-benchmark op (issue 18 target: <= 2) | $RATIO |"
mkdir -p "$BENCH_DIR/results"
echo "$TABLE" | tee "$BENCH_DIR/results/fence.txt"
if [ "${1:-}" != --quick ]; then
    SECTION=$(cat <<EOF2
## Fenced apply script: Redis instructions

Last run: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $COMMIT; command: \`bash bench/fence.sh\` (also a step of \`bash bench/run.sh\`).
redis-server under valgrind callgrind (user-space instructions, the kernel's socket work not counted; unlike CPU
seconds they do not move with the load of the shared machine); the first run of each measure warms up, the second
counts. Rows of (int, int, text) pushed as hashes.

$TABLE
EOF2
)
    bench_write_section 'Fenced apply script: Redis instructions' "$SECTION"
    echo "wrote the fenced-script section of bench/RESULTS.md"
fi

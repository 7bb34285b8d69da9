#!/usr/bin/env bash
# redis_sync benchmark suite.
#
#   bash bench/run.sh            full run (~20 min); rewrites bench/RESULTS.md
#   bash bench/run.sh --quick    development run (< 3 min); RESULTS.md untouched
#
# Brings up a throw-away sandbox (tests/sandbox.sh: Redis + PostgreSQL 15 with
# redis_sync preloaded), runs every benchmark of bench/bench.pl alternating
# baseline and subject runs (median of >= 3), prints one table and writes
# bench/results/latest.json.  The extension must be installed already
# (`make install`); set BENCH_BUILD=1 to build and install it first via
# tests/deps.sh.  BENCH_KEEP=1 leaves the sandbox running afterwards.
# BENCH_ONLY=single,tpcb,bulk,memory,truncate,naive,lag,outage,restart,idle,drain,wblag,scale,warm,async_cost
# runs a subset (development aid; RESULTS.md is then not rewritten, unless
# BENCH_MERGE=1 without --quick: then the rows of those sections replace theirs
# in bench/RESULTS.md, and its "Partial re-runs" note lists the run).
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BENCH_MODE=full bench_args run.sh 2,14 "$@"
bench_setup bench

for tool in pgbench psql redis-server redis-cli redis-benchmark perl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: '$tool' not found in PATH" >&2; exit 1; }
done

if [ "${BENCH_BUILD:-0}" = 1 ]; then
    # shellcheck source=../tests/deps.sh
    . "$REPO/tests/deps.sh"
    ensure_deps
    build_install
fi
PKGLIB=$("$PGBIN/pg_config" --pkglibdir)
if [ ! -f "$PKGLIB/redis_sync.so" ]; then
    echo "bench: redis_sync is not installed in $PKGLIB; run 'make install' (or BENCH_BUILD=1 bash bench/run.sh)" >&2
    exit 1
fi

# the build the servers load is fixed at start: record the commit now
BENCH_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain -- src extension 2>/dev/null)" ]; then
    BENCH_COMMIT="$BENCH_COMMIT (with uncommitted changes in src/ or extension/)"
fi
export BENCH_COMMIT BENCH_SO_MD5=$(md5sum "$PKGLIB/redis_sync.so" | cut -c1-12)
bench_sandbox --own
export BENCH_MODE=$MODE BENCH_REPO=$REPO BENCH_CMD="bash bench/run.sh${1:+ $*}"

perl "$BENCH_DIR/bench.pl"
[ -n "${BENCH_ONLY:-}" ] || BENCH_MODE=$MODE bash "$BENCH_DIR/tls.sh"   # TLS vs plain TCP (bench/tls.sh)
[ -n "${BENCH_ONLY:-}" ] || bash "$BENCH_DIR/cluster.sh" $([ "$MODE" = quick ] && echo --quick)   # Redis Cluster vs single Redis (bench/cluster.sh)
[ -n "${BENCH_ONLY:-}" ] || [ "$MODE" = quick ] || bash "$BENCH_DIR/chart.sh"   # scale curve and lag charts (bench/chart.sh)
[ -n "${BENCH_ONLY:-}" ] || bash "$BENCH_DIR/fence.sh" $([ "$MODE" = quick ] && echo --quick)   # Redis instructions per pushed row (bench/fence.sh)
[ -n "${BENCH_ONLY:-}" ] && [[ ",$BENCH_ONLY," != *,async_cost,* ]] || BENCH_MODE=$MODE bash "$BENCH_DIR/async_cost.sh"   # CPU and WAL per async commit (bench/async_cost.sh)

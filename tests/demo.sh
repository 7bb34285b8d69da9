#!/usr/bin/env bash
# Live demo: PostgreSQL (database "app") + Redis on loopback in /tmp/redis_sync_demo.
#
#   bash tests/demo.sh [--check]      (make demo)
#   bash tests/sandbox.sh stop /tmp/redis_sync_demo   (make demo-stop)
#
# Never prompts; --check (or CI=true) additionally stops the servers at the end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/deps.sh
. "$REPO/tests/deps.sh"
export PATH="$PGBIN:$PATH"

CHECK=0
[ "${1:-}" = --check ] && CHECK=1
[ "${CI:-}" = true ] && CHECK=1

DEMO_DIR=${DEMO_DIR:-/tmp/redis_sync_demo}

ensure_deps
[ "${SKIP_BUILD:-0}" = 1 ] || build_install

# start stops (and wipes) any earlier demo sandbox in the same directory
bash "$REPO/tests/sandbox.sh" start "$DEMO_DIR" app
# shellcheck disable=SC1091
. "$DEMO_DIR/env"

if [ "$CHECK" = 1 ]; then
    trap 'bash "$REPO/tests/sandbox.sh" stop "$DEMO_DIR"' EXIT
fi

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d app)
RCLI=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
OUT=$DEMO_DIR/demo.out
: >"$OUT"

step() { printf '\n\033[1m## %s\033[0m\n' "$*" | tee -a "$OUT"; }
sql() {
    printf 'app=# %s\n' "$*" | tee -a "$OUT"
    "${PSQL[@]}" -P pager=off -c "$*" 2>&1 | tee -a "$OUT"
}
rcli() {
    printf '$ redis-cli %s\n' "$*" | tee -a "$OUT"
    "${RCLI[@]}" "$@" 2>&1 | tee -a "$OUT"
}

step "1. the extension, in a database whose server preloads redis_sync"
sql "CREATE EXTENSION redis_sync"
sql "SELECT redis_sync.command('PING') AS redis"

step "2. write-through: committed changes reach Redis at commit"
sql "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2))"
sql "SELECT redis_sync.write_through('products', key_prefix => 'product:')"
sql "INSERT INTO products VALUES (1, 'widget', 10.00), (2, 'gadget', 25.00)"
sql "UPDATE products SET price = 12.50 WHERE id = 1"
rcli HGETALL product:1

step "3. a rolled-back transaction changes nothing in Redis"
sql "BEGIN; UPDATE products SET price = 999 WHERE id = 1; ROLLBACK"
rcli HGET product:1 price

step "4. write-behind: the application counts in Redis, the worker drains into the table"
sql "CREATE TABLE product_stats (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0)"
sql "SELECT redis_sync.write_behind('product_stats', key_prefix => 'stats:', counters => '{view_count}')"
rcli HINCRBY stats:1 view_count 1
rcli SADD stats:dirty 1
rcli HINCRBY stats:1 view_count 1
rcli SADD stats:dirty 1
sql "SELECT redis_sync.flush('product_stats') AS drained"
sql "SELECT * FROM product_stats"

step "5. what is synced, and what happened"
sql "SELECT \"table\", policy, captured, pushed, queued, delivered, claimed, applied, outbox_depth FROM redis_sync.stats"

step "6. verify: the cache and the table agree"
sql "SELECT count(*) AS differences FROM redis_sync.verify('products')"

step "7. a second database: CREATE EXTENSION gives it its own worker, no configuration"
sql "CREATE DATABASE shop"
printf 'shop=# %s\n' "CREATE EXTENSION redis_sync" | tee -a "$OUT"
"${PSQL[@]}" -d shop -c "CREATE EXTENSION redis_sync" 2>&1 | tee -a "$OUT"
for _ in $(seq 1 500); do
    [ "$("${PSQL[@]}" -At -c "SELECT count(*) FILTER (WHERE worker_running) FROM redis_sync.worker_stats")" = 2 ] && break
    sleep 0.01
done
sql "SELECT database, worker_running, worker_state, circuit FROM redis_sync.worker_stats"

# In check mode (CI) the key lines must be there.
if [ "$CHECK" = 1 ]; then
    fail=0
    expect() {
        if ! grep -qF -- "$1" "$OUT"; then
            echo "demo: expected output line missing: $1" >&2
            fail=1
        fi
    }
    expect '12.50'                 # the UPDATE reached Redis
    expect 'product:1'
    expect ' 1 |          2'        # the write-behind counter is in the table
    expect ' differences '
    expect ' shop     | t              | running'   # the second database's worker
    grep -A2 ' differences ' "$OUT" | grep -qE '^\s+0$' || { echo "demo: verify reported differences" >&2; fail=1; }
    [ "$("${RCLI[@]}" HGET product:1 price)" = 12.50 ] || { echo "demo: rollback leaked into Redis" >&2; fail=1; }
    [ "$fail" = 0 ] || exit 1
fi

rm -f "${DEPS_LOG:-}"

if [ "$CHECK" = 1 ]; then
    echo
    echo "demo check passed; servers stopped."
    exit 0
fi

STOP_HINT="bash tests/sandbox.sh stop $DEMO_DIR"
[ "$DEMO_DIR" = /tmp/redis_sync_demo ] && STOP_HINT="make demo-stop        (= $STOP_HINT)"

cat <<MSG

Both servers are still running (files in $DEMO_DIR). Continue by hand:
  psql -h 127.0.0.1 -p $PGPORT -U $PGUSER app
      UPDATE products SET name = 'renamed' WHERE id = 2;
      SELECT * FROM redis_sync.get(NULL::products, '2');
  redis-cli -p $REDIS_PORT
      HGETALL product:2
      HINCRBY stats:2 view_count 5
      SADD stats:dirty 2          (then in psql: SELECT redis_sync.flush(); TABLE product_stats;)
Stop them with:
  $STOP_HINT
MSG

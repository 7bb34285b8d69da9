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

echo
echo "==> psql -X -e -f tests/demo.sql"
psql -X -e -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d app -f "$REPO/tests/demo.sql"

echo "==> redis-cli -p $REDIS_PORT GET demo:hello"
value=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" GET demo:hello)
echo "$value"
if [ "$value" != world ]; then
    echo "demo: expected 'world' from Redis, got '$value'" >&2
    exit 1
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

Both servers are still running (files in $DEMO_DIR):
  psql -h 127.0.0.1 -p $PGPORT -U $PGUSER app
  redis-cli -p $REDIS_PORT
Stop them with:
  $STOP_HINT
MSG

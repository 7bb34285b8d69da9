#!/usr/bin/env bash
# redis_sync TLS benchmark: what rediss:// costs against plain TCP, same run.
#
#   bash bench/tls.sh            full run (~1 min); rewrites the "## TLS" section
#                                of bench/RESULTS.md
#   bash bench/tls.sh --quick    shorter runs; prints only
#
# One redis-server listens on a plain port and a TLS port (certificates made
# here with openssl; full verification, TLS 1.3); redis_sync.redis_url is
# switched between redis://127.0.0.1:P and rediss://127.0.0.1:T with a reload,
# alternating plain and TLS runs (median of 3).  Measured:
#   - single-row sync push: pgbench -c 1, one UPDATE of a write-through row
#     per transaction (synchronous_commit = off, so Redis dominates)
#   - bulk push: one UPDATE of 100,000 write-through rows (elapsed)
#   - one round trip: command('PING') 20,000 times in one backend (us each)
# Run from bench/run.sh (inside its sandbox: PGHOST etc. set) or standalone
# (starts its own sandbox with tests/sandbox.sh; the extension must be
# installed).
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args tls.sh 2,18 "$@"
bench_setup bench_tls
RUNS=3
if [ "$MODE" = quick ]; then T=2; ROWS=20000; PINGS=5000; else T=8; ROWS=100000; PINGS=20000; fi
TLS_REDIS_PID=
bench_on_exit '[ -n "$TLS_REDIS_PID" ] && kill "$TLS_REDIS_PID"'
bench_sandbox
RUN_USER=${RUN_USER:-$(id -un)}
as_run_user() {
    if [ "$(id -u)" -eq 0 ] && [ "$RUN_USER" != root ]; then
        (cd "$WORK" && runuser -u "$RUN_USER" -- "$@")
    else
        (cd "$WORK" && "$@")
    fi
}
say() { echo "[tls] $*" >&2; }

# ---------------------------------------------------------------- certificates
PKI=$WORK/pki
mkdir -p "$PKI"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
    -subj "/CN=redis_sync bench CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/server.key" -out "$PKI/server.csr" \
    -subj "/CN=localhost" 2>/dev/null
printf 'basicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n' >"$PKI/server.ext"
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$PKI/server.ext" -out "$PKI/server.crt" 2>/dev/null
chmod 755 "$PKI"
chmod 644 "$PKI"/*   # throw-away test keys, read by the run user

# ---------------------------------------------------------------- redis-server
read -r PLAIN_PORT TLS_PORT < <(perl -MIO::Socket::INET -e '
    my @s = map { IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "tcp", Listen => 1) or die } 1 .. 2;
    print join(" ", map { $_->sockport } @s), "\n";')
RD=$WORK/redis
mkdir -p "$RD"
[ "$(id -u)" -eq 0 ] && chown "$RUN_USER" "$RD"
as_run_user redis-server --bind 127.0.0.1 --port "$PLAIN_PORT" --tls-port "$TLS_PORT" \
    --tls-cert-file "$PKI/server.crt" --tls-key-file "$PKI/server.key" \
    --tls-ca-cert-file "$PKI/ca.crt" --tls-auth-clients no \
    --save '' --appendonly no --daemonize yes --dir "$RD" \
    --logfile "$RD/redis.log" --pidfile "$RD/redis.pid"
for _ in $(seq 1 300); do
    redis-cli -p "$PLAIN_PORT" PING 2>/dev/null | grep -q PONG && [ -s "$RD/redis.pid" ] && break
    sleep 0.1
done
TLS_REDIS_PID=$(cat "$RD/redis.pid")
say "redis-server pid $TLS_REDIS_PID: plain port $PLAIN_PORT, TLS port $TLS_PORT"

PLAIN_URL="redis://127.0.0.1:$PLAIN_PORT/0"
TLS_URL="rediss://127.0.0.1:$TLS_PORT/0"

psql_q() { psql -XAtq -v ON_ERROR_STOP=1 "$@"; }

use_url() {
    local url=$1
    psql_q -c "ALTER SYSTEM SET redis_sync.redis_url = '$url'" -c "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 1 200); do
        [ "$(psql_q -c "SELECT current_setting('redis_sync.redis_url')")" = "$url" ] && break
        sleep 0.05
    done
    # the new backend connects (and handshakes) before the measurement
    psql_q -c "SELECT redis_sync.command('PING')" >/dev/null
}

psql_q -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS redis_sync" >/dev/null
psql_q -c "ALTER SYSTEM SET redis_sync.tls_ca_file = '$PKI/ca.crt'" \
    -c "ALTER SYSTEM SET redis_sync.tls_verify = 'full'" >/dev/null
use_url "$PLAIN_URL"
psql_q <<SQL >/dev/null
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_tls;
CREATE TABLE bench_tls (id int PRIMARY KEY, v int NOT NULL, note text);
INSERT INTO bench_tls SELECT g, 0, 'row ' || g FROM generate_series(1, $ROWS) g;
SELECT redis_sync.write_through('bench_tls', key_prefix => 'btls:');
VACUUM ANALYZE bench_tls;
SQL
printf '\\set id random(1, %d)\nUPDATE bench_tls SET v = v + 1 WHERE id = :id;\n' "$ROWS" >"$WORK/single.sql"
chmod 644 "$WORK/single.sql"

single_tps() {
    PGOPTIONS='-c synchronous_commit=off' pgbench -n -c 1 -T "$T" -f "$WORK/single.sql" 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1
}
bulk_ms() {
    psql -XAtq -v ON_ERROR_STOP=1 -c '\timing on' -c 'UPDATE bench_tls SET v = v + 1' |
        sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
ping_us() {
    psql -XAtq -v ON_ERROR_STOP=1 -c '\timing on' \
        -c "DO \$\$ BEGIN FOR i IN 1..$PINGS LOOP PERFORM redis_sync.command('PING'); END LOOP; END \$\$" |
        sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1 | awk -v n="$PINGS" '{ printf "%.1f", $1 * 1000 / n }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -a SP ST BP BT PP PT
for i in $(seq 1 $RUNS); do
    use_url "$PLAIN_URL"; SP+=("$(single_tps)"); BP+=("$(bulk_ms)"); PP+=("$(ping_us)")
    use_url "$TLS_URL";   ST+=("$(single_tps)"); BT+=("$(bulk_ms)"); PT+=("$(ping_us)")
    say "run $i: single plain ${SP[-1]} tps, TLS ${ST[-1]} tps; bulk plain ${BP[-1]} ms, TLS ${BT[-1]} ms; PING plain ${PP[-1]} us, TLS ${PT[-1]} us"
done
# every key made it through TLS: the last bulk UPDATE ran over rediss://
check=$(redis-cli -p "$PLAIN_PORT" HGET "btls:$ROWS" v)
want=$(psql_q -c "SELECT v FROM bench_tls WHERE id = $ROWS")
[ "$check" = "$want" ] || { echo "bench/tls.sh: Redis has v=$check for btls:$ROWS, the table $want" >&2; exit 1; }
psql_q -c "ALTER SYSTEM RESET redis_sync.tls_ca_file" -c "ALTER SYSTEM RESET redis_sync.tls_verify" \
    -c "ALTER SYSTEM SET redis_sync.redis_url = '${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}'" \
    -c "SELECT pg_reload_conf()" >/dev/null
psql_q -c "DROP TABLE bench_tls" >/dev/null

msp=$(median "${SP[@]}"); mst=$(median "${ST[@]}")
mbp=$(median "${BP[@]}"); mbt=$(median "${BT[@]}")
mpp=$(median "${PP[@]}"); mpt=$(median "${PT[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
proto=$(echo | openssl s_client -connect "127.0.0.1:$TLS_PORT" -CAfile "$PKI/ca.crt" 2>/dev/null |
    sed -n 's/^ *Protocol *: *//p; s/^New, \(.*\), Cipher is \(.*\)$/\1 \2/p' | head -1)

TABLE=$(cat <<EOF
| benchmark | plain TCP | TLS | TLS / plain |
|---|---:|---:|---:|
| single-row UPDATE, write_through sync push (pgbench -c 1, sc=off, ${T}s) | $(printf '%.0f' "$msp") tps | $(printf '%.0f' "$mst") tps | $(ratio "$mst" "$msp") |
| one UPDATE of $ROWS write-through rows (bulk push) | $(printf '%.0f' "$mbp") ms | $(printf '%.0f' "$mbt") ms | $(ratio "$mbt" "$mbp") |
| one round trip: command('PING') x $PINGS in one backend | $mpp us | $mpt us | $(ratio "$mpt" "$mpp") |
EOF
)
echo "$TABLE"

if [ "$MODE" = full ]; then
    date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    SECTION=$(cat <<EOF
## TLS

Last run: $date, commit $commit; command: \`bash bench/tls.sh\` (also the last step of \`bash bench/run.sh\`).
One redis-server with a plain and a TLS port ($proto, server certificate verified in full, no client
certificate); redis_sync.redis_url switched between them with a reload; plain and TLS runs alternate, median
of $RUNS.

$TABLE

Per run (plain / TLS): single-row $(printf '%.0f ' "${SP[@]}")/ $(printf '%.0f ' "${ST[@]}")tps;
bulk $(printf '%.0f ' "${BP[@]}")/ $(printf '%.0f ' "${BT[@]}")ms; PING ${PP[*]} / ${PT[*]} us. The machine is
shared by PostgreSQL, Redis and the client (2 cores), so single runs vary by 20% or more: compare each
run's plain and TLS figures with each other rather than
read the medians' ratios as a precise overhead.
EOF
)
    bench_write_section TLS "$SECTION"
    say "wrote the TLS section of bench/RESULTS.md"
fi

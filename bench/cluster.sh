#!/usr/bin/env bash
# Redis Cluster benchmark: a bulk 100k-row push and the single-row sync push
# (write-through), on a 3-master Redis Cluster and on a single Redis, in the
# same run, against the same PostgreSQL (the URL is switched by ALTER SYSTEM
# + reload between runs, alternating, median of the runs).
#
#   bash bench/cluster.sh            3 runs each, 100k rows, 10 s pgbench
#   bash bench/cluster.sh --quick    1 run each, 20k rows, 3 s pgbench
#
# The extension must be installed (make install).  Prints one table; writes
# bench/results/cluster.txt.  Called from bench/run.sh.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=3 ROWS=100000 SECS=10
[ "${1:-}" = --quick ] && { RUNS=1 ROWS=20000 SECS=3; }

bench_setup clbench
SB=$WORK
CPIDS=()
bench_on_exit 'for p in "${CPIDS[@]}"; do kill "$p"; done'
bench_sandbox --own
SINGLE_URL=$REDIS_URL

# three cluster masters on free loopback ports below 55536 (bus: port + 10000)
cluster_ports() {
    perl -MIO::Socket::INET -e '
        my @p;
        while (@p < 3) {
            my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "tcp", Listen => 1) or next;
            my $p = $s->sockport; close $s;
            next if $p >= 55536;
            my $b = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $p + 10000, Proto => "tcp", Listen => 1) or next;
            close $b; push @p, $p unless grep { $_ == $p } @p;
        }
        print "@p\n";'
}
read -r -a PORTS <<<"$(cluster_ports)"
for p in "${PORTS[@]}"; do
    mkdir -p "$SB/c$p"
    redis-server --bind 127.0.0.1 --port "$p" --save '' --appendonly no --daemonize yes \
        --dir "$SB/c$p" --logfile "$SB/c$p/log" --pidfile "$SB/c$p/pid" \
        --cluster-enabled yes --cluster-config-file nodes.conf >/dev/null
done
for p in "${PORTS[@]}"; do
    for _ in $(seq 100); do redis-cli -p "$p" PING 2>/dev/null | grep -q PONG && break; sleep 0.05; done
    CPIDS+=("$(cat "$SB/c$p/pid")")
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${PORTS[@]}") --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 300); do
    redis-cli -p "${PORTS[0]}" CLUSTER INFO | grep -q 'cluster_state:ok' && break
    sleep 0.1
done
CLUSTER_URL="redis://$(printf '127.0.0.1:%s,' "${PORTS[@]}" | sed 's/,$//')/0"

PSQL="psql -X -q -v ON_ERROR_STOP=1"
$PSQL -c "CREATE EXTENSION IF NOT EXISTS redis_sync" >/dev/null
$PSQL >/dev/null <<'EOF'
CREATE TABLE clb_bulk (id int PRIMARY KEY, name text, qty int);
CREATE TABLE clb_one (id int PRIMARY KEY, v int);
INSERT INTO clb_one SELECT g, 0 FROM generate_series(1, 1000) g;
EOF

use_url() {
    $PSQL -c "ALTER SYSTEM SET redis_sync.redis_url = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 100); do
        [ "$($PSQL -At -c 'SHOW redis_sync.redis_url')" = "$1" ] && break
        sleep 0.05
    done
    redis_flush "$1"
    # (re)sync: the tables' keys go to this Redis from now on
    $PSQL >/dev/null <<'EOF'
SELECT redis_sync.unsync('clb_bulk') FROM redis_sync.tables WHERE relid = 'clb_bulk'::regclass;
SELECT redis_sync.unsync('clb_one') FROM redis_sync.tables WHERE relid = 'clb_one'::regclass;
TRUNCATE clb_bulk;
SELECT redis_sync.write_through('clb_bulk', key_prefix => 'b:', warm => false);
SELECT redis_sync.write_through('clb_one', key_prefix => 'o:', warm => false);
SELECT redis_sync.warm('clb_one');
EOF
}
redis_flush() {
    if [ "$1" = "$SINGLE_URL" ]; then
        redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
    else
        for p in "${PORTS[@]}"; do redis-cli -p "$p" FLUSHALL >/dev/null; done
    fi
}

# Redis CPU of one server: used_cpu_sys + used_cpu_user (s), and the time
# spent running commands (INFO commandstats, usec; reset by CONFIG RESETSTAT)
redis_cpu() {
    redis-cli -p "$1" INFO cpu | tr -d '\r' |
        awk -F: '$1 == "used_cpu_sys" || $1 == "used_cpu_user" {s += $2} END {printf "%.3f\n", s}'
}
redis_cmd_usec() {
    redis-cli -p "$1" INFO commandstats | tr -d '\r' |
        sed -n 's/.*usec=\([0-9]*\),.*/\1/p' | awk '{s += $1} END {print s + 0}'
}
mode_ports() { if [ "$1" = single ]; then echo "$REDIS_PORT"; else echo "${PORTS[*]}"; fi; }

# the bulk push: wall ms; also records, per Redis server of the mode, the
# CPU (ms) and command time (ms) that push cost it, in CPU_<mode>/CMD_<mode>
bulk_ms() {
    local mode=$1 p before=() ms i=0
    for p in $(mode_ports "$mode"); do
        redis-cli -p "$p" CONFIG RESETSTAT >/dev/null
        before+=("$(redis_cpu "$p")")
    done
    ms=$($PSQL -c '\timing on' -c "INSERT INTO clb_bulk SELECT g, 'name ' || g, g FROM generate_series(1, $ROWS) g" |
        sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    local cpu="" cmd=""
    for p in $(mode_ports "$mode"); do
        cpu+="$(awk -v a="${before[$i]}" -v b="$(redis_cpu "$p")" 'BEGIN {printf "%.0f", (b - a) * 1000}')/"
        cmd+="$(awk -v u="$(redis_cmd_usec "$p")" 'BEGIN {printf "%.0f", u / 1000}')/"
        i=$((i + 1))
    done
    echo "$mode ${cpu%/} ${cmd%/}" >>"$SB/cpu.txt"
    echo "$ms"
}
echo "\\set id random(1, 1000)
UPDATE clb_one SET v = v + 1 WHERE id = :id;" >"$SB/one.sql"
chmod 644 "$SB/one.sql"
single_tps() {
    pgbench -n -c 1 -T "$SECS" -f "$SB/one.sql" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A BULK TPS
for r in $(seq "$RUNS"); do
    for mode in single cluster; do
        url=$SINGLE_URL; [ "$mode" = cluster ] && url=$CLUSTER_URL
        use_url "$url"
        BULK[$mode]+="$(bulk_ms "$mode") "
        TPS[$mode]+="$(single_tps) "
    done
done

# the cluster really was used: keys on every master
spread=$(for p in "${PORTS[@]}"; do redis-cli -p "$p" DBSIZE; done | paste -sd/)

OUT=$(
    declare -A b t
    printf 'Redis Cluster vs single Redis (%s runs, median; commit %s)\n' "$RUNS" \
        "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf '%-44s %14s %14s\n' "" "single Redis" "3-master cluster"
    for mode in single cluster; do
        b[$mode]=$(tr ' ' '\n' <<<"${BULK[$mode]}" | grep . | median)
        t[$mode]=$(tr ' ' '\n' <<<"${TPS[$mode]}" | grep . | median)
    done
    printf '%-44s %14s %14s\n' "bulk push: INSERT of $ROWS rows (ms)" "${b[single]}" "${b[cluster]}"
    printf '%-44s %14s %14s\n' "single-row sync push: pgbench 1 client (tps)" "${t[single]}" "${t[cluster]}"
    printf 'keys per cluster master after the last run: %s\n' "$spread"
    # Redis-side work of the bulk push, per server (this machine's cores are
    # shared with PostgreSQL, so wall time cannot show the masters working in
    # parallel; the CPU each master spends can): medians over the runs
    cpu_single=$(awk '$1 == "single" {print $2}' "$SB/cpu.txt" | median)
    cmd_single=$(awk '$1 == "single" {print $3}' "$SB/cpu.txt" | median)
    per_cpu="" per_cmd=""
    for k in 1 2 3; do
        per_cpu+="$(awk '$1 == "cluster" {print $2}' "$SB/cpu.txt" | cut -d/ -f$k | median)/"
        per_cmd+="$(awk '$1 == "cluster" {print $3}' "$SB/cpu.txt" | cut -d/ -f$k | median)/"
    done
    per_cpu=${per_cpu%/} per_cmd=${per_cmd%/}
    share() { tr / '\n' <<<"$1" | awk -v one="$2" '{s += $1; if ($1 > m) m = $1}
        END {printf "max %d ms = %.2f of the masters'"'"' sum (%d ms), %.2f of the single Redis", m, (s ? m / s : 0), s, (one ? m / one : 0)}'; }
    printf 'Redis CPU of the bulk push (used_cpu_sys+user, ms): single Redis %s; per master %s: %s\n' \
        "$cpu_single" "$per_cpu" "$(share "$per_cpu" "$cpu_single")"
    printf 'Redis command time of the bulk push (INFO commandstats, ms): single Redis %s; per master %s: %s\n' \
        "$cmd_single" "$per_cmd" "$(share "$per_cmd" "$cmd_single")"
)
echo "$OUT"
mkdir -p "$BENCH_DIR/results"
echo "$OUT" >"$BENCH_DIR/results/cluster.txt"

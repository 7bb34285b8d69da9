#!/usr/bin/env bash
# The backend's CPU time per single-row UPDATE + COMMIT (user + system, from
# /proc/PID/stat), unsynced, with a no-op PL/pgSQL trigger, with one bare
# Redis PING per transaction from a trigger (the floor of any synchronous
# push: one round trip), write-through and invalidate.  Issue 18's "backend
# CPU added by a single-row sync push": the figure to compare with the push's
# is the PING's, measured in the same run; the ratio says what the push adds
# beyond one round trip.
#
#   PGBIN=... bash bench/backend_cpu.sh [TXNS]     (default 20,000 per run)
#
# Starts a sandbox (tests/sandbox.sh), makes five 100,000-row tables, and runs
# a procedure of TXNS (UPDATE of a random row; COMMIT) in one session per
# table, three rounds in rotating order, synchronous_commit off and
# redis_sync.reply_spin 0 (the backend sleeps for the reply instead of
# polling: polling would add CPU while it waits).  The extension must be
# installed (make install).  Prints one table; with --write, also the
# "Backend CPU per push" section of bench/RESULTS.md.  Not part of
# bench/run.sh (~2 min).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WRITE=0
[ "${1:-}" = --write ] && { WRITE=1; shift; }
TXNS=${1:-20000}
bench_setup backend_cpu
bench_sandbox --own
psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE EXTENSION redis_sync;
CREATE TABLE s_base (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
INSERT INTO s_base SELECT g, g, 'row number ' || g FROM generate_series(1, 100000) g;
CREATE TABLE s_noop (LIKE s_base INCLUDING ALL);
CREATE TABLE s_ping (LIKE s_base INCLUDING ALL);
CREATE TABLE s_wt (LIKE s_base INCLUDING ALL);
CREATE TABLE s_inv (LIKE s_base INCLUDING ALL);
INSERT INTO s_noop SELECT * FROM s_base;
INSERT INTO s_ping SELECT * FROM s_base;
INSERT INTO s_wt SELECT * FROM s_base;
INSERT INTO s_inv SELECT * FROM s_base;
VACUUM ANALYZE;
CREATE FUNCTION noop_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER noop AFTER UPDATE ON s_noop FOR EACH ROW EXECUTE FUNCTION noop_trg();
CREATE FUNCTION ping_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM redis_sync.command('PING');
    RETURN NULL;
END $$;
CREATE TRIGGER ping AFTER UPDATE ON s_ping FOR EACH ROW EXECUTE FUNCTION ping_trg();
SELECT redis_sync.write_through('s_wt', key_prefix => 's_wt:');
SELECT redis_sync.invalidate('s_inv', key_prefix => 's_inv:');
CREATE PROCEDURE uloop(tbl regclass, n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        EXECUTE format('UPDATE %s SET v = v + 1 WHERE id = $1', tbl) USING 1 + (i * 7919) % 100000;
        COMMIT;
    END LOOP;
END $$;
-- user + system CPU of this backend, in clock ticks
CREATE FUNCTION cpu_ticks() RETURNS bigint LANGUAGE sql AS $$
    SELECT split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint
      FROM pg_read_file('/proc/' || pg_backend_pid() || '/stat') AS s $$;
SQL
TCK=$(getconf CLK_TCK)
# one run: microseconds of CPU per transaction
run() {
    psql -XAtq -v ON_ERROR_STOP=1 -v tbl="$1" -v n="$TXNS" <<'SQL'
SET synchronous_commit = off;
SET redis_sync.reply_spin = 0;
CALL uloop(:'tbl', 500);
SELECT cpu_ticks() AS t0 \gset
CALL uloop(:'tbl', :n);
SELECT cpu_ticks() - :t0;
SQL
}
TABLES=(s_base s_noop s_ping s_wt s_inv)
declare -A RUNS
for round in 1 2 3; do
    # rotate the order each round
    for i in "${!TABLES[@]}"; do
        t=${TABLES[$(((i + round) % ${#TABLES[@]}))]}
        ticks=$(run "$t" | tail -1)
        RUNS[$t]="${RUNS[$t]:-} $(echo "$ticks * 1000000 / $TCK / $TXNS" | bc -l | xargs printf '%.1f')"
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A M
for t in "${TABLES[@]}"; do
    # shellcheck disable=SC2086
    M[$t]=$(median ${RUNS[$t]})
done
added() { echo "${M[$1]} - ${M[s_base]}" | bc -l | xargs printf '%.1f'; }
ratio() { echo "(${M[$1]} - ${M[s_base]}) / (${M[s_ping]} - ${M[s_base]})" | bc -l | xargs printf '%.2f'; }
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
TABLE="| per UPDATE + COMMIT (sc=off, reply_spin 0, median of 3 x $TXNS) | backend CPU | added to unsynced | added / the PING's | runs |
|---|---:|---:|---:|---|
| unsynced | ${M[s_base]} µs | - | - |${RUNS[s_base]} |
| no-op PL/pgSQL trigger | ${M[s_noop]} µs | $(added s_noop) µs | $(ratio s_noop) |${RUNS[s_noop]} |
| one bare PING from a trigger (the floor) | ${M[s_ping]} µs | $(added s_ping) µs | 1.00 |${RUNS[s_ping]} |
| write-through push | ${M[s_wt]} µs | $(added s_wt) µs | $(ratio s_wt) |${RUNS[s_wt]} |
| invalidate push | ${M[s_inv]} µs | $(added s_inv) µs | $(ratio s_inv) |${RUNS[s_inv]} |"
echo "$TABLE"
if [ "$WRITE" = 1 ]; then
    SECTION=$(cat <<EOF2
## Backend CPU per push

Last run: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $COMMIT; command: \`bash bench/backend_cpu.sh --write\`.
User + system CPU of the backend (/proc/PID/stat) over a procedure of $TXNS single-row UPDATEs, each committed,
per transaction; issue 18's target for what a push adds is 15 µs. One bare PING round trip from a trigger costs
the backend about as much as the whole push: the sleep for the reply, the wake-up and the socket calls, not
redis_sync's own code (bench/push_cpu.sh counts its instructions).

$TABLE
EOF2
)
    bench_write_section 'Backend CPU per push' "$SECTION"
    echo "wrote the backend CPU section of bench/RESULTS.md"
fi

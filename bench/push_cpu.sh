#!/usr/bin/env bash
# Backend instructions per single-row UPDATE + COMMIT, unsynced, write-through
# and invalidate (issue 18: the synchronous push's own CPU), counted by
# valgrind's callgrind, which the machine's load does not move.
#
#   PGBIN=... bash bench/push_cpu.sh
#
# Starts a sandbox (tests/sandbox.sh), makes three 100,000-row tables, stops
# PostgreSQL and runs a single-user backend under callgrind twice per table
# (200 and 2,000 UPDATEs, each its own transaction, synchronous_commit off);
# the difference divided by 1,800 is one transaction without start-up costs.
# The figure to compare is redis_sync's own share (the trigger and the
# transaction callback, inclusive): the rest moves with the heap's state.
# The pushes go to the sandbox's Redis.  Not part of bench/run.sh (~3 min).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_setup push_cpu
command -v valgrind >/dev/null || { echo "push_cpu: valgrind not found" >&2; exit 1; }
SB=$WORK
bench_sandbox --own
psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE EXTENSION redis_sync;
CREATE TABLE s_base (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
INSERT INTO s_base SELECT g, g, 'row number ' || g FROM generate_series(1, 100000) g;
CREATE TABLE s_wt (LIKE s_base INCLUDING ALL);
INSERT INTO s_wt SELECT * FROM s_base;
CREATE TABLE s_inv (LIKE s_base INCLUDING ALL);
INSERT INTO s_inv SELECT * FROM s_base;
VACUUM ANALYZE;
SELECT redis_sync.write_through('s_wt', key_prefix => 's_wt:');
SELECT redis_sync.invalidate('s_inv', key_prefix => 's_inv:');
SELECT redis_sync.warm('s_wt');
SQL
bench_as_user "$PGBIN/pg_ctl" -D "$SB/sb/pgdata" -w stop -m fast >/dev/null

mkdir "$SB/out" && chmod 777 "$SB/out"    # callgrind writes as the server's user
# the extension's own instructions: the capture trigger and the transaction
# callback (pre-commit push, commit), inclusive of what they call
ext() {
    callgrind_annotate --inclusive=yes "$1" 2>/dev/null |
        awk '/redis_sync_capture \[|publish_xact_callback \[/ { gsub(",", "", $1); s += $1 } END { print s + 0 }'
}
total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }
for t in s_base s_wt s_inv; do
    for n in 200 2000; do
        perl -e 'for my $i (0 .. $ARGV[1] - 1) { printf "UPDATE %s SET v = v + 1 WHERE id = %d;\n", $ARGV[0], 1 + ($i * 7919) % 100000 }' "$t" "$n" > "$SB/in.sql"
        chmod 644 "$SB/in.sql"
        bench_as_user env TMPDIR="$SB/out" valgrind --tool=callgrind --callgrind-out-file="$SB/out/cg.$t.$n" \
            "$PGBIN/postgres" --single -D "$SB/sb/pgdata" -c synchronous_commit=off -c fsync=off bench \
            < "$SB/in.sql" > "$SB/cg.log" 2>&1 || { tail -20 "$SB/cg.log" >&2; exit 1; }
    done
    a=$(total "$SB/out/cg.$t.200"); b=$(total "$SB/out/cg.$t.2000")
    ea=$(ext "$SB/out/cg.$t.200"); eb=$(ext "$SB/out/cg.$t.2000")
    printf '%-7s %7d instructions per UPDATE + COMMIT, %6d of them redis_sync'"'"'s (trigger + commit callback)\n' \
        "$t" $(( (b - a) / 1800 )) $(( (eb - ea) / 1800 ))
done

-- Backend CPU (utime+stime ticks from /proc) of 100,000-row UPDATEs of a
-- write-through table, hash then json format: the cost of the capture's
-- encoding.  Run with psql against a sandbox whose psql runs on the server
-- host (it reads /proc/<backend pid>/stat): psql -f bench/encoding_cpu.sql
-- Differences of consecutive 'cpu' lines are the UPDATEs, in 1/100 s.
\set QUIET on
DROP TABLE IF EXISTS bench;
CREATE TABLE bench (id int PRIMARY KEY, d date, ts timestamptz, f float8, n numeric, t text, iv interval);
SELECT redis_sync.write_through('bench', key_prefix => 'bench:');
INSERT INTO bench SELECT g, '2024-01-01'::date + g % 1000, now(), g / 7.0, g * 1.5, 'row ' || g, (g || ' s')::interval FROM generate_series(1, 100000) g;
SELECT pg_backend_pid() AS pid \gset
\setenv BPID :pid
\! echo start $(awk '{print $14+$15}' /proc/$BPID/stat)
UPDATE bench SET f = f + 1;
\! echo cpu $(awk '{print $14+$15}' /proc/$BPID/stat)
UPDATE bench SET f = f + 1;
\! echo cpu $(awk '{print $14+$15}' /proc/$BPID/stat)
UPDATE bench SET f = f + 1;
\! echo cpu $(awk '{print $14+$15}' /proc/$BPID/stat)
UPDATE bench SET f = f + 1;
\! echo cpu $(awk '{print $14+$15}' /proc/$BPID/stat)
UPDATE bench SET f = f + 1;
\! echo cpu $(awk '{print $14+$15}' /proc/$BPID/stat)
CREATE TABLE benchj (LIKE bench INCLUDING ALL);
SELECT redis_sync.write_through('benchj', key_prefix => 'benchj:', format => 'json');
INSERT INTO benchj SELECT * FROM bench;
\! echo startj $(awk '{print $14+$15}' /proc/$BPID/stat)
UPDATE benchj SET f = f + 1;
\! echo cpuj $(awk '{print $14+$15}' /proc/$BPID/stat)
UPDATE benchj SET f = f + 1;
\! echo cpuj $(awk '{print $14+$15}' /proc/$BPID/stat)
UPDATE benchj SET f = f + 1;
\! echo cpuj $(awk '{print $14+$15}' /proc/$BPID/stat)
DROP TABLE bench, benchj;

# ATTACH and DETACH PARTITION act on the partitions the command really moved,
# found by comparing the table's partitions at the command's end with those
# at its start (taken under the command's own lock), not by names or guards:
# - a partition name that means another table by the time the command runs
#   (schemas renamed while the DETACH waits for its lock) purged the keys of
#   the table the name meant at first (live rows of the synced table that
#   share its key values) and left the detached partition's keys cached;
# - every DETACH from a synced table dropped each guard-shaped trigger in
#   the database, waiting for its table's lock: any role could block or
#   fail the owner's DETACH (and pg_partman's retention) with a trigger of
#   that shape on a table of its own and an open transaction locking it;
# - the rows of an attached table were never cached.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('partition_moves', redis => $redis);
$node->safe_psql('postgres', q{
CREATE TABLE r (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE r1 PARTITION OF r FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('r', key_prefix => 'r:');
CREATE SCHEMA s;
CREATE SCHEMA s_new;
CREATE TABLE s.p (id int PRIMARY KEY, v text);           -- a plain table
INSERT INTO s.p VALUES (1, 'unrelated');
CREATE TABLE s_new.p PARTITION OF r FOR VALUES FROM (500) TO (600);
INSERT INTO r VALUES (1, 'live'), (501, 'in s_new.p');
-- its guard dropped by the table's owner: the detach must not depend on it
DROP TRIGGER redis_sync_truncate_partition ON s_new.p;
});
is($redis->cli('EXISTS', 'r:1', 'r:501'), '2', 'rows 1 and 501 cached');

# 1. the name "p" means s.p (a plain table) when the DETACH starts, and the
# partition s_new.p (renamed to s.p) once it holds its lock.  Before 0.2 the
# partition kept its keys (it had no guard); resolving the name at the
# command's start purged the key of row 1 instead (s_old.p has a row 1)
my $hold = RedisSync::Test::session($node);
$hold->query('BEGIN; LOCK TABLE r IN ACCESS SHARE MODE');
my $d = RedisSync::Test::session($node);
$d->start_query(q{SET search_path = s, public; SET lock_timeout = '60s';
ALTER TABLE r DETACH PARTITION p});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_locks WHERE relation = 'r'::regclass AND NOT granted}, 't'),
	'the DETACH waits for the lock on r');
$node->safe_psql('postgres', 'ALTER SCHEMA s RENAME TO s_old; ALTER SCHEMA s_new RENAME TO s');
$hold->query('COMMIT');
my $res = $d->finish_query;
is($res->{err}, '', 'the DETACH went through') or diag($res->{err});
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_inherits WHERE inhrelid = 's.p'::regclass}),
	'0', 'it detached the partition the name meant then (s.p, was s_new.p)');
is($redis->cli('EXISTS', 'r:501'), '0', 'the keys of the detached partition\'s rows are gone');
is($redis->cli('HGET', 'r:1', 'v'), 'live', 'the key of the synced table\'s row 1 stays (s_old.p has a row 1 too)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('r')}), '0', 'verify(r) finds nothing');

# 2. a plain role's trigger of the guard's shape, on its own table, locked by
# its open transaction: the owner's DETACH neither waits for it nor drops it
$node->safe_psql('postgres', q{
CREATE ROLE mallory LOGIN;
CREATE SCHEMA mal AUTHORIZATION mallory;
CREATE TABLE r2 PARTITION OF r FOR VALUES FROM (200) TO (300);
INSERT INTO r VALUES (201, 'b');
SET ROLE mallory;
CREATE TABLE mal.t (id int);
CREATE TRIGGER redis_sync_truncate_partition BEFORE TRUNCATE ON mal.t
  FOR EACH STATEMENT EXECUTE FUNCTION redis_sync.capture('1');
});
my $m = RedisSync::Test::session($node);
$m->query('SET ROLE mallory; BEGIN; LOCK TABLE mal.t IN ACCESS EXCLUSIVE MODE');
my ($rc, $out, $err) = $node->psql('postgres', q{SET lock_timeout = '5s'; ALTER TABLE r DETACH PARTITION r2});
is($rc, 0, 'the DETACH does not wait for the other role\'s table') or diag($err);
$m->query('COMMIT');
is($redis->cli('EXISTS', 'r:201'), '0', 'the detached partition\'s keys are gone');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger
                                   WHERE tgrelid = 'mal.t'::regclass AND tgname = 'redis_sync_truncate_partition'}),
	'1', 'the other role\'s trigger stays');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger
                                   WHERE tgrelid = 'r2'::regclass AND tgname = 'redis_sync_truncate_partition'}),
	'0', 'the detached partition\'s guard is gone');

# the event trigger at the start of an ATTACH / DETACH takes the command's
# lock early only for the relation's owner: a plain role naming a view it
# does not own (a reader holds it) gets the command's own error at once,
# not a wait for that view's ACCESS EXCLUSIVE lock
$node->safe_psql('postgres', q{CREATE VIEW rv AS SELECT * FROM r; GRANT SELECT ON rv TO mallory});
my $reader = RedisSync::Test::session($node);
$reader->query('BEGIN; SELECT count(*) FROM rv');
($rc, $out, $err) = $node->psql('postgres',
	q{SET ROLE mallory; SET lock_timeout = '2s'; ALTER TABLE rv DETACH PARTITION r1});
like($err, qr/must be owner of view rv/, 'a plain role: the owner check, before any lock');
$reader->query('COMMIT');
$reader->quit;

# 3. ATTACH of a table with rows: the worker warms it in the background (the
# ATTACH itself reads none of them); a sub-partitioned one, each leaf
$node->safe_psql('postgres', q{
CREATE TABLE r3 (id int NOT NULL, v text) PARTITION BY RANGE (id);
CREATE TABLE r3a PARTITION OF r3 FOR VALUES FROM (300) TO (350);
CREATE TABLE r3b PARTITION OF r3 FOR VALUES FROM (350) TO (400);
INSERT INTO r3 VALUES (301, 'a'), (351, 'b');
ALTER TABLE r ATTACH PARTITION r3 FOR VALUES FROM (300) TO (400);
ALTER TABLE r ATTACH PARTITION r2 FOR VALUES FROM (200) TO (300);
});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM redis_sync.warming WHERE state = 'done' AND "table" IN ('r3a'::regclass, 'r3b'::regclass)}, 't'),
	'the worker warms both leaves of the attached table');
is($redis->cli('HGET', 'r:301', 'v') . $redis->cli('HGET', 'r:351', 'v'), 'ab',
	'the rows of both leaves of the attached table are cached');
ok($node->poll_query_until('postgres', q{SELECT redis_sync.command('HGET', 'r:201', 'v') = '"b"'}, 't'),
	'the row of the table attached again is cached');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('r')}), '0', 'verify(r) finds nothing');

# 1b. the table's own name means a plain table when the DETACH starts (so
# nothing is read then) and the synced table once the command holds its lock:
# the end cannot tell what moved, and says so (resync() repairs)
$node->safe_psql('postgres', q{
CREATE SCHEMA x; CREATE SCHEMA y;
CREATE TABLE x.pt (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE x.pt1 PARTITION OF x.pt FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('x.pt', key_prefix => 'pt:');
INSERT INTO x.pt VALUES (1, 'a');
CREATE TABLE y.pt (id int);
});
$hold->quit; $d->quit;
$hold = RedisSync::Test::session($node);
$hold->query('BEGIN; LOCK TABLE y.pt IN ACCESS SHARE MODE');
$d = RedisSync::Test::session($node);
$d->start_query(q{SET search_path = y, x; SET lock_timeout = '60s'; ALTER TABLE pt DETACH PARTITION x.pt1});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_locks WHERE relation = 'y.pt'::regclass AND NOT granted}, 't'),
	'the DETACH waits for the lock on y.pt');
$node->safe_psql('postgres', 'ALTER SCHEMA y RENAME TO y_old');
$hold->query('COMMIT');
$res = $d->finish_query;
like($res->{err}, qr/WARNING:  redis_sync could not tell which partitions this command moved in or out of table pt/,
	'a move the start did not see: a WARNING with the remedy');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_inherits WHERE inhrelid = 'x.pt1'::regclass}), '0',
	'x.pt1 was detached from x.pt');
$node->safe_psql('postgres', q{SELECT redis_sync.resync('x.pt')});
is($redis->cli('EXISTS', 'pt:1'), '0', 'resync() removes the detached row\'s key');
$hold->quit; $d->quit;

# 4. what the start of a move remembers is freed: 200 ATTACH and DETACH of
# a 300-partition table in one session leave TopMemoryContext as it was
# (a list of the table's partitions leaked per command before)
$node->safe_psql('postgres', q{
CREATE TABLE big (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
DO $$ BEGIN FOR g IN 1 .. 300 LOOP
  EXECUTE format('CREATE TABLE big_%s PARTITION OF big FOR VALUES FROM (%s) TO (%s)', g, g * 10, g * 10 + 10);
END LOOP; END $$;
CREATE TABLE big_x (id int NOT NULL, v text);
});
my $growth = $node->safe_psql('postgres', q{
CREATE TEMP TABLE m0 AS SELECT used_bytes FROM pg_backend_memory_contexts WHERE name = 'TopMemoryContext';
DO $$ BEGIN FOR i IN 1 .. 100 LOOP
  ALTER TABLE big ATTACH PARTITION big_x FOR VALUES FROM (0) TO (10);
  ALTER TABLE big DETACH PARTITION big_x;
END LOOP; END $$;
SELECT (SELECT used_bytes FROM pg_backend_memory_contexts WHERE name = 'TopMemoryContext') - used_bytes FROM m0;
});
cmp_ok($growth, '<', 32768, "200 partition moves of a 300-partition table: TopMemoryContext grew by $growth bytes");

$m->quit;
done_testing();

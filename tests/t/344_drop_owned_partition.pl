# DROP OWNED that drops a partition of a synced write-through table (the
# partition owned by another role than the table) removes the keys of its
# rows, as DROP TABLE of the partition does (lifecycle.c): a partition
# owned by the role, a partition in a schema the role owns (CASCADE), a
# role that owns the synced table itself and one whose collation the key
# index needs (CASCADE).  A caller without the privileges of the role
# named neither reads nor locks anything: its DROP OWNED fails with
# PostgreSQL's own error, not a lock timeout behind a writer of the table.
# REASSIGN OWNED of a partition's owner leaves the keys and the capture.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('drop_owned', redis => $redis,
	extra_conf => "redis_sync.naptime = '200ms'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE ROLE app LOGIN; CREATE ROLE tmp LOGIN; CREATE ROLE tmp2 LOGIN;
CREATE ROLE tmp3 LOGIN; CREATE ROLE tmp4 LOGIN; CREATE ROLE mallory LOGIN;
CREATE ROLE keeper LOGIN;
GRANT CREATE ON SCHEMA public TO app, tmp3;
CREATE SCHEMA sx AUTHORIZATION tmp2;
GRANT USAGE, CREATE ON SCHEMA sx TO app;
SET ROLE app;
CREATE TABLE w (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE w_1 PARTITION OF w FOR VALUES FROM (0) TO (100);
CREATE TABLE w_2 PARTITION OF w FOR VALUES FROM (100) TO (200);
CREATE TABLE w_3 PARTITION OF w FOR VALUES FROM (200) TO (300);
CREATE TABLE w_4 PARTITION OF w FOR VALUES FROM (300) TO (400);
CREATE TABLE sx.w_5 PARTITION OF w FOR VALUES FROM (400) TO (500);
SELECT redis_sync.write_through('w', key_prefix => 'w:');
INSERT INTO w SELECT g, 'v' FROM generate_series(1, 499, 100) g;
RESET ROLE;
ALTER TABLE w_2 OWNER TO tmp;
ALTER TABLE w_4 OWNER TO keeper;
SET ROLE tmp3;
CREATE TABLE t3 (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t3', key_prefix => 't3:');
INSERT INTO t3 VALUES (1, 'a');
RESET ROLE;
CREATE COLLATION c4 (locale = 'C');
ALTER COLLATION c4 OWNER TO tmp4;
CREATE TABLE t4 (k text NOT NULL, v text);
CREATE UNIQUE INDEX t4_k ON t4 (k COLLATE c4);
SELECT redis_sync.write_through('t4', key_prefix => 't4:', key_columns => '{k}');
INSERT INTO t4 VALUES ('x', 'a');
});
ok(defined RedisSync::Compare::wait_for(sub {
	$redis->cli('EXISTS', (map { "w:$_" } (1, 101, 201, 301, 401)), 't3:1', 't4:x') eq '7' }, 20),
	'all cached');

# a caller without the role's privileges, while a writer holds w's lock
my $locker = $node->background_psql('postgres', on_error_stop => 0);
$locker->query_safe('BEGIN; LOCK TABLE w IN ACCESS EXCLUSIVE MODE;');
my ($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE mallory; SET lock_timeout = '3s'; DROP OWNED BY tmp;");
like($err, qr/permission denied to drop objects/,
	'DROP OWNED by a caller without the rights fails with its own error, no lock wait')
  or diag($err);
$locker->query_safe('COMMIT');

# the bootstrap superuser's objects: DROP OWNED refuses them, with no wait
# for the locks of the synced partitions it owns (here of app's table)
sq(q{SET ROLE app;
CREATE TABLE s (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE s_1 PARTITION OF s FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('s', key_prefix => 's:');
INSERT INTO s VALUES (1);
RESET ROLE;
ALTER TABLE s_1 OWNER TO CURRENT_USER;});
$locker->query_safe('BEGIN; LOCK TABLE s IN ACCESS EXCLUSIVE MODE;');
($rc, $out, $err) = $node->psql('postgres',
	"SET lock_timeout = '3s'; DROP OWNED BY CURRENT_USER;");
like($err, qr/required by the database system/,
	'DROP OWNED of the bootstrap superuser fails with its own error, no lock wait')
  or diag($err);
$locker->query_safe('COMMIT');
$locker->quit;

($rc, $out, $err) = $node->psql('postgres', 'DROP OWNED BY tmp;');
is($rc, 0, 'DROP OWNED BY tmp runs') or diag($err);
is(sq("SELECT count(*) FROM pg_class WHERE relname = 'w_2'"), '0', 'the partition is dropped');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 'w:101') eq '0' }, 20),
	'the keys of the partition DROP OWNED dropped are gone');

($rc, $out, $err) = $node->psql('postgres', 'BEGIN; DROP OWNED BY tmp2 CASCADE; ROLLBACK;');
is($redis->cli('EXISTS', 'w:401'), '1', 'a DROP OWNED rolled back leaves the keys');
($rc, $out, $err) = $node->psql('postgres', 'DROP OWNED BY tmp2 CASCADE;');
is($rc, 0, 'DROP OWNED BY tmp2 CASCADE runs') or diag($err);
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 'w:401') eq '0' }, 20),
	'the keys of a partition in a schema DROP OWNED ... CASCADE dropped are gone');

# REASSIGN OWNED: the partition stays, and so do its keys and its capture
($rc, $out, $err) = $node->psql('postgres', 'REASSIGN OWNED BY keeper TO app;');
is($rc, 0, 'REASSIGN OWNED runs') or diag($err);
is($redis->cli('EXISTS', 'w:301'), '1', 'REASSIGN OWNED leaves the keys');
sq("UPDATE w SET v = 'new' WHERE id = 301");
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'w:301', 'v') // '') eq 'new' }, 20),
	'a write to the reassigned partition is still pushed');

($rc, $out, $err) = $node->psql('postgres', 'DROP OWNED BY tmp3;');
is($rc, 0, 'DROP OWNED of the synced table\'s owner runs') or diag($err);
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 't3:1') eq '0' }, 20),
	'the keys of a synced table DROP OWNED dropped are gone');

($rc, $out, $err) = $node->psql('postgres', 'DROP OWNED BY tmp4 CASCADE;');
is($rc, 0, 'DROP OWNED ... CASCADE that drops the key index runs') or diag($err);
is(sq("SELECT count(*) FROM redis_sync.tables WHERE relid = 't4'::regclass"), '0',
	'a table whose key index DROP OWNED ... CASCADE dropped is no longer synced');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 't4:x') eq '0' }, 20),
	'and its keys are gone');

# an async table, DROP OWNED run by the partition's owner itself (no superuser)
sq(q{CREATE ROLE tmp5 LOGIN;
SET ROLE app;
CREATE TABLE a (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE a_1 PARTITION OF a FOR VALUES FROM (0) TO (100);
CREATE TABLE a_2 PARTITION OF a FOR VALUES FROM (100) TO (200);
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async');
INSERT INTO a VALUES (1, 'x'), (101, 'y');
SELECT redis_sync.flush('a');
RESET ROLE;
ALTER TABLE a_2 OWNER TO tmp5;});
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 'a:1', 'a:101') eq '2' }, 20),
	'async: cached');
($rc, $out, $err) = $node->psql('postgres', "SET ROLE tmp5; DROP OWNED BY tmp5; RESET ROLE; SELECT redis_sync.flush('a');");
is($rc, 0, 'async: the partition owner\'s own DROP OWNED runs') or diag($err);
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 'a:101') eq '0' }, 20),
	'async: the keys of the partition DROP OWNED dropped are gone');
is($redis->cli('EXISTS', 'a:1'), '1', 'async: the other partition\'s keys stay');

is(sq("SELECT count(*) FROM redis_sync.verify('w')"), '0', 'verify finds nothing');
is(sq("SELECT count(*) FROM redis_sync.verify('a')"), '0', 'verify finds nothing (async)');
done_testing();

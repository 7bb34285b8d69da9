# pg_dump | pg_restore of a database with synced plain, partitioned and
# write-behind tables: plain, --single-transaction, parallel (-j 2), and a
# plain-SQL dump replayed with psql --single-transaction.  Each restore must succeed (the
# DDL event trigger used to create the partitions' TRUNCATE guard that the
# dump then created again), restore the configuration, and the restored
# database must sync: write-through changes reach Redis, partitions keep
# their guard (which still names the source's table OID), partitions can be
# attached and detached, write-behind values are drained into the table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $src   = RedisSync::Test::new_node('dumpsrc', redis => $redis);

$src->safe_psql(
	'postgres', q{
CREATE SCHEMA app;
CREATE TABLE app.plain (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('app.plain', key_prefix => 'plain:');
CREATE TABLE part (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('part', key_prefix => 'part:');
CREATE TABLE part_2 PARTITION OF part FOR VALUES FROM (100) TO (200);
CREATE TABLE part_3 (id int NOT NULL, v text);
ALTER TABLE part ATTACH PARTITION part_3 FOR VALUES FROM (200) TO (300);
CREATE TABLE wb (id int PRIMARY KEY, hits int NOT NULL DEFAULT 0);
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', flush_interval => '200 ms');
INSERT INTO app.plain SELECT g, 'p' || g FROM generate_series(1, 10) g;
INSERT INTO part SELECT g, 'q' || g FROM generate_series(1, 290, 7) g;
INSERT INTO wb VALUES (1, 1), (2, 2);
});
my $guards_src = $src->safe_psql('postgres',
	q{SELECT string_agg(tgrelid::regclass::text, ',' ORDER BY tgrelid::regclass::text)
	    FROM pg_trigger WHERE tgname = 'redis_sync_truncate_partition'});
is($guards_src, 'part_1,part_2,part_3', 'source: every partition has its guard');

my $part_oid = $src->safe_psql('postgres', q{SELECT 'part'::regclass::oid});
my $dir = PostgreSQL::Test::Utils::tempdir();
$src->command_ok([ 'pg_dump', '-Fc', '-f', "$dir/db.dump", '-d', $src->connstr('postgres') ],
	'pg_dump -Fc');
$src->command_ok([ 'pg_dump', '-f', "$dir/db.sql", '-d', $src->connstr('postgres') ],
	'pg_dump (plain SQL)');

my $n = 0;
for my $mode ('pg_restore', 'pg_restore --single-transaction', 'psql --single-transaction', 'pg_restore -j 2')
{
	$n++;
	my $db = "restored$n";
	my $dst = PostgreSQL::Test::Cluster->new("dumpdst$n");
	$dst->init;
	$dst->append_conf('postgresql.conf', "shared_preload_libraries = 'redis_sync'\n"
		  . "redis_sync.redis_url = '" . $redis->url($n) . "'\n"
		  . "redis_sync.database = '$db'\n");
	$dst->start;
	$dst->safe_psql('postgres', "CREATE DATABASE $db");
	# the restored tables must not get the source's OIDs by chance
	$dst->safe_psql($db, 'CREATE TABLE oid_shift (a int, b text); DROP TABLE oid_shift') for 1 .. $n;

	my @cmd =
	    $mode eq 'pg_restore' ? ('pg_restore', '--exit-on-error', '-d', $dst->connstr($db), "$dir/db.dump")
	  : $mode eq 'pg_restore -j 2' ? ('pg_restore', '--exit-on-error', '-j', '2', '-d', $dst->connstr($db), "$dir/db.dump")
	  : $mode =~ /^pg_restore/ ? ('pg_restore', '--exit-on-error', '--single-transaction',
		'-d', $dst->connstr($db), "$dir/db.dump")
	  : ('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction',
		'-d', $dst->connstr($db), '-f', "$dir/db.sql");
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	ok($ok, "$mode: restore succeeded") or diag($stderr);
	unlike($stderr, qr/ERROR/, "$mode: no error") or diag($stderr);

	is( $dst->safe_psql($db,
			q{SELECT string_agg(relid::text || '/' || policy, ',' ORDER BY relid::text) FROM redis_sync.tables}),
		'app.plain/write_through,part/write_through,wb/write_behind',
		"$mode: configuration restored");
	is( $dst->safe_psql($db,
			q{SELECT string_agg(tgrelid::regclass::text, ',' ORDER BY tgrelid::regclass::text)
			    FROM pg_trigger WHERE tgname = 'redis_sync_truncate_partition'}),
		$guards_src, "$mode: each partition has its guard, once");
	is($dst->safe_psql($db, 'SELECT count(*) FROM part'), '42', "$mode: partitioned rows restored");
	isnt($dst->safe_psql($db, q{SELECT 'part'::regclass::oid}), $part_oid,
		"$mode: the partitioned table has another OID than in the source");

	# the restored database syncs
	$dst->safe_psql($db, q{SELECT redis_sync.warm('app.plain'); SELECT redis_sync.warm('part')});
	$dst->safe_psql($db, q{
UPDATE app.plain SET v = 'changed' WHERE id = 3;
INSERT INTO part VALUES (250, 'new in part_3');
});
	is($redis->cli('-n', $n, 'HGET', 'plain:3', 'v'), 'changed', "$mode: write-through UPDATE reached Redis");
	is($redis->cli('-n', $n, 'HGET', 'part:250', 'v'), 'new in part_3',
		"$mode: INSERT into an attached partition reached Redis");
	is($dst->safe_psql($db, q{SELECT count(*) FROM redis_sync.verify('app.plain')}), '0',
		"$mode: verify(app.plain) clean");
	is($dst->safe_psql($db, q{SELECT count(*) FROM redis_sync.verify('part')}), '0',
		"$mode: verify(part) clean");
	my ($r, $o, $e) = $dst->psql($db, 'TRUNCATE part_2');
	like($e, qr/cannot truncate partition "part_2"/, "$mode: the guard works");
	# the restored guards name the source's table OID: TRUNCATE of the
	# partitioned table must still pass them and purge its keys
	($r, $o, $e) = $dst->psql($db, 'BEGIN; TRUNCATE part; SELECT count(*) FROM part; ROLLBACK');
	is($r, 0, "$mode: TRUNCATE of the restored partitioned table passes the guards") or diag($e);
	# ... and ATTACH and DETACH must take them for guards: before, every
	# ATTACH to the restored table failed ("has a trigger named
	# redis_sync_truncate_partition that redis_sync did not create"), and a
	# build that matched the OID left a detached partition's keys cached
	($r, $o, $e) = $dst->psql($db, q{CREATE TABLE part_4 (id int NOT NULL, v text);
ALTER TABLE part ATTACH PARTITION part_4 FOR VALUES FROM (300) TO (400)});
	is($r, 0, "$mode: ATTACH PARTITION to the restored table") or diag($e);
	is($redis->cli('-n', $n, 'EXISTS', 'part:106'), '1', "$mode: a row of part_2 is cached");
	($r, $o, $e) = $dst->psql($db, 'ALTER TABLE part DETACH PARTITION part_2');
	is($r, 0, "$mode: DETACH PARTITION from the restored table") or diag($e);
	is($redis->cli('-n', $n, 'EXISTS', 'part:106'), '0', "$mode: the detach removed the keys of part_2's rows");
	is( $dst->safe_psql($db,
			q{SELECT string_agg(tgrelid::regclass::text, ',' ORDER BY tgrelid::regclass::text)
			    FROM pg_trigger WHERE tgname = 'redis_sync_truncate_partition'}),
		'part_1,part_3,part_4', "$mode: the detached partition's guard went, the attached one's came");
	is($dst->safe_psql($db, q{SELECT count(*) FROM redis_sync.verify('part')}), '0',
		"$mode: verify(part) clean after the attach and the detach");

	$redis->cli('-n', $n, 'HSET', 'wb:7', 'hits', '70');
	$redis->cli('-n', $n, 'SADD', 'wb:dirty', '7');
	ok($dst->poll_query_until($db, q{SELECT redis_sync.flush() >= 0 AND EXISTS (SELECT 1 FROM wb WHERE id = 7 AND hits = 70)}),
		"$mode: write-behind value drained into the restored table");

	# a second restore into a fresh database of the same server works too
	$dst->stop;
}

$src->stop;
done_testing();

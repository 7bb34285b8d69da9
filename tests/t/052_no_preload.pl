# redis_sync without shared_preload_libraries.  A library loaded after
# startup may not define PGC_POSTMASTER settings (PostgreSQL ends the session
# with a FATAL); redis_sync must load safely, sync write-through with
# delivery => 'sync' must work, and everything that needs the worker or
# shared memory must fail with the documented hint, never with a FATAL.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = PostgreSQL::Test::Cluster->new('nopreload');
$node->init;
$node->append_conf('postgresql.conf', "redis_sync.redis_url = '" . $redis->url . "'\n"
	  . "redis_sync.database = 'postgres'\n");
$node->start;

# a session that LOADs the library, before the extension exists
my ($ret, $out, $err) = $node->psql('postgres',
	"LOAD 'redis_sync'; SHOW redis_sync.database; SELECT 1");
is($ret, 0, 'LOAD redis_sync in a session: no error');
is($out, "postgres\n1", '... the session goes on, redis_sync.database readable');
unlike($err, qr/FATAL/, '... no FATAL');

($ret, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION redis_sync');
is($ret, 0, 'CREATE EXTENSION without preload') or diag($err);
unlike($err, qr/FATAL/, '... no FATAL');

# sync write-through works
($ret, $out, $err) = $node->psql(
	'postgres', q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:');
INSERT INTO t VALUES (1, 'one'), (2, 'two');
UPDATE t SET v = 'uno' WHERE id = 1;
DELETE FROM t WHERE id = 2;
SELECT redis_sync.command('PING');
});
is($ret, 0, 'write_through(), INSERT, UPDATE, DELETE, command() without preload') or diag($err);
unlike($err, qr/FATAL/, '... no FATAL');
is($redis->cli('HGET', 't:1', 'v'), 'uno', 'UPDATE reached Redis');
is($redis->cli('EXISTS', 't:2'), '0', 'DELETE reached Redis');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('t')}), '0',
	'verify() clean');

# a fresh session whose first contact is a plain UPDATE (the library loads
# from the trigger)
($ret, $out, $err) = $node->psql('postgres', q{UPDATE t SET v = 'first' WHERE id = 1});
is($ret, 0, 'UPDATE in a fresh session loads the library') or diag($err);
is($redis->cli('HGET', 't:1', 'v'), 'first', '... and reaches Redis');

# what needs the worker or shared memory fails with the hint
for my $case (
	[ 'async delivery', q{CREATE TABLE a (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', delivery => 'async')} ],
	[ 'write-behind', q{CREATE TABLE w (id int PRIMARY KEY, v text);
SELECT redis_sync.write_behind('w')} ],
	[ 'stats',        q{SELECT * FROM redis_sync.stats} ],
	[ 'worker_stats', q{SELECT * FROM redis_sync.worker_stats} ],
	[ 'worker_pause', q{SELECT redis_sync.worker_pause()} ])
{
	my ($name, $sql) = @$case;
	($ret, $out, $err) = $node->psql('postgres', $sql);
	isnt($ret, 0, "$name fails without preload");
	like($err, qr/ERROR: .*requires redis_sync to be loaded via shared_preload_libraries/,
		"$name: the documented error");
	like($err, qr/HINT:  Add redis_sync to shared_preload_libraries/, "$name: the hint");
	unlike($err, qr/FATAL/, "$name: no FATAL");
}

# flush() of write-through tables delivers in the session; DROP TABLE purges
# at commit (no worker to hand it to)
($ret, $out, $err) = $node->psql('postgres', 'SELECT redis_sync.flush(); DROP TABLE t');
is($ret, 0, 'flush() and DROP TABLE without preload') or diag($err);
is($redis->cli('EXISTS', 't:1'), '0', 'DROP TABLE purged the keys at commit');

# the server is still healthy: no backend crashed
my $log = slurp_file($node->logfile);
unlike($log, qr/FATAL|terminated by signal|PGC_POSTMASTER/, 'server log: no FATAL, no crash');
$node->stop;
done_testing();

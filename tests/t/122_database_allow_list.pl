# redis_sync.database: 0.1's "the worker's database", an optional allow-list
# since 0.2.  An old postgresql.conf naming one database still loads and
# keeps the worker there only; emptying the setting (reload, no restart)
# gives every database with the extension its worker; a list can name
# several.  Also: ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
# DATABASE ... TEMPLATE of a database with a worker are not refused ("being
# accessed by other users"): the worker steps aside and comes back.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'allowlist',
	redis      => $redis,
	extra_conf => "redis_sync.database = 'postgres'\n");    # a 0.1 configuration

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }

sub state_of
{
	my ($db) = @_;
	return sql('postgres',
		"SELECT coalesce((SELECT worker_state FROM redis_sync.worker_stats WHERE database = '$db'), 'none')");
}

sub wait_state
{
	my ($db, $want) = @_;
	return RedisSync::Compare::wait_for(sub { state_of($db) eq $want }, 30, 0.01);
}

ok(defined wait_state('postgres', 'running'), "0.1 configuration: a worker in 'postgres'");

sql('postgres', 'CREATE DATABASE b');
sql('b', 'CREATE EXTENSION redis_sync');
is(sql('b', "SELECT worker_state FROM redis_sync.worker_stats WHERE database = 'b'"),
	'not in redis_sync.database', "b: no worker, and worker_stats says why");
my ($ret, $out, $err) = $node->psql('b', q{
CREATE TABLE IF NOT EXISTS a (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', key_prefix => 'b:a:', delivery => 'async');
});
isnt($ret, 0, 'b: async delivery refused');
like($err, qr/async delivery needs a redis_sync worker, and redis_sync.database does not list database "b"/,
	'... with the reason');
($ret, $out, $err) = $node->psql('b', q{
CREATE TABLE w (id int PRIMARY KEY, n bigint);
SELECT redis_sync.write_behind('w', key_prefix => 'b:w:');
});
like($err, qr/write-behind tables need a redis_sync worker/, 'b: write-behind refused');

# empty the list: every database, at the reload
$node->append_conf('postgresql.conf', "redis_sync.database = ''\n");
$node->reload;
ok(defined wait_state('b', 'running'), 'after emptying redis_sync.database (reload) b has a worker');
sql('b', q{
CREATE TABLE IF NOT EXISTS a (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', key_prefix => 'b:a:', delivery => 'async');
INSERT INTO a VALUES (1, 'one');
});
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'b:a:1', 'v') // '') eq 'one' }, 30),
	'b: async table delivered by its worker');

# a list naming b only: the worker of postgres stops
$node->append_conf('postgresql.conf', "redis_sync.database = ' b , nosuchdb'\n");
$node->reload;
ok(defined wait_state('postgres', 'not in redis_sync.database'),
	"a list without 'postgres': its worker stops");
is(state_of('b'), 'running', 'b keeps its worker');
$node->append_conf('postgresql.conf', "redis_sync.database = 'postgres,b'\n");
$node->reload;
ok(defined wait_state('postgres', 'running'), "listed again: 'postgres' has a worker again");

# ALTER DATABASE RENAME and CREATE DATABASE ... TEMPLATE need b to themselves
my $pid = sql('postgres', "SELECT worker_pid FROM redis_sync.worker_stats WHERE database = 'b'");
$node->append_conf('postgresql.conf', "redis_sync.database = ''\n");
$node->reload;
my $t0 = time;
($ret, $out, $err) = $node->psql('postgres', 'CREATE DATABASE b_copy TEMPLATE b');
is($ret, 0, 'CREATE DATABASE ... TEMPLATE b succeeds while b has a worker') or diag($err);
cmp_ok(time - $t0, '<', 4, '... without waiting for it');
ok(defined wait_state('b', 'running'), 'b has its worker again afterwards');
ok(defined wait_state('b_copy', 'running'), 'the copy (it has the extension) got a worker at the next look at pg_database');
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE b RENAME TO b2');
is($ret, 0, 'ALTER DATABASE b RENAME succeeds while b has a worker') or diag($err);
ok(defined wait_state('b2', 'running'), 'b2 (renamed) has a worker again');
isnt(sql('postgres', "SELECT worker_pid FROM redis_sync.worker_stats WHERE database = 'b2'"),
	$pid, '... a new one');
sql('b2', "INSERT INTO a VALUES (2, 'two')");
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'b:a:2', 'v') // '') eq 'two' }, 30),
	'b2: async deliveries go on');

# ALTER DATABASE ... SET TABLESPACE moves the files: the worker steps aside
my $tsdir = PostgreSQL::Test::Utils::tempdir_short();
sql('postgres', "CREATE TABLESPACE ts LOCATION '$tsdir'");
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE b2 SET TABLESPACE ts');
is($ret, 0, 'ALTER DATABASE b2 SET TABLESPACE succeeds while b2 has a worker') or diag($err);
ok(defined wait_state('b2', 'running'), 'b2 has a worker again afterwards');
sql('b2', "INSERT INTO a VALUES (3, 'three')");
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'b:a:3', 'v') // '') eq 'three' }, 30),
	'b2: async deliveries go on after the move');

$node->stop;
done_testing();

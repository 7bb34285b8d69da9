# The crash-after-push fault (see 023_crash_after_push.pl) in a database
# other than the first: a backend of "app2" PANICs right after its
# pre-commit push reached Redis, crash recovery rolls its transaction back,
# and the worker of app2 -- started again by the launcher after the crash
# restart, without any redis_sync.database setting -- finds the in-flight
# marker of app2 (the marker key names the database) and repairs the keys.
# The worker of "postgres" leaves app2's marker alone.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'crash2',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.marker_sweep_interval = '200ms'
restart_after_crash = on
EOC

my ($ret, $out, $err) = $node->psql('postgres', 'SHOW redis_sync.debug_crash_after_push');
if ($ret != 0)
{
	$node->stop;
	plan skip_all => 'debug_crash_after_push not available';
}

$node->safe_psql('postgres', 'CREATE DATABASE app2');
$node->safe_psql(
	'app2', q{
CREATE EXTENSION redis_sync;
CREATE TABLE e (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('e', key_prefix => 'app2:e:', consistency => 'eventual');
INSERT INTO e SELECT g, g, 'e' || g FROM generate_series(1, 100) g;
});
# a table in "postgres" too: its worker must not take app2's marker for its own
$node->safe_psql(
	'postgres', q{
CREATE TABLE p (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('p', key_prefix => 'pg:p:', consistency => 'eventual');
INSERT INTO p SELECT g, g, 'p' || g FROM generate_series(1, 10) g;
});
my %cmp = (
	dbname      => 'app2',
	table       => 'e',
	prefix      => 'app2:e:',
	key_columns => ['id'],
	columns     => [ 'id', 'v', 'note' ]);
RedisSync::Compare::cache_matches_table($node, $redis, %cmp, name => 'app2: table cached');

sub worker_running
{
	my ($db) = @_;
	my ($r, $o) = $node->psql('postgres',
		"SELECT worker_running FROM redis_sync.worker_stats WHERE database = '$db'");
	return $r == 0 && $o eq 't';
}
ok(defined RedisSync::Compare::wait_for(sub { worker_running('app2') }, 30), 'app2: worker running');

my $before = $node->safe_psql('app2', 'SELECT id, v, note FROM e ORDER BY id');
my $log_offset = -s $node->logfile;
($ret, $out, $err) = $node->psql(
	'app2', q{
SET redis_sync.debug_crash_after_push = on;
BEGIN;
SELECT 'xid=' || pg_current_xact_id();
UPDATE e SET v = v + 1000, note = 'crashed' WHERE id <= 50;
DELETE FROM e WHERE id > 90;
INSERT INTO e SELECT g, g, 'crashed' FROM generate_series(101, 110) g;
COMMIT;
});
isnt($ret, 0, 'the crashing COMMIT in app2 does not report success');
my ($crashed_xid) = $out =~ /xid=(\d+)/;
ok( defined RedisSync::Compare::wait_for(
		sub { worker_running('app2') && worker_running('postgres') }, 60, 0.1),
	'after crash recovery the launcher started both workers again');
my $log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/PANIC/, 'the backend PANICked (fault injection)');
is($node->safe_psql('app2', 'SELECT id, v, note FROM e ORDER BY id'), $before,
	'crashed transaction rolled back');

# commit past the crashed xid (it may be handed out again)
my $xid = 0;
my $guard = 0;
while ($xid <= ($crashed_xid // 0) && $guard++ < 1000)
{
	$xid = $node->safe_psql('app2', 'SELECT pg_current_xact_id()');
}

RedisSync::Compare::wait_cache_matches_table($node, $redis, %cmp,
	timeout => 30, name => 'app2: cache == table after the repair');
is($redis->cli('HGET', 'app2:e:1', 'note'), 'e1', 'app2:e:1 holds the committed value again');
is($redis->cli('EXISTS', 'app2:e:101'), '0', 'app2:e:101 (inserted by the crashed transaction) is gone');
is($redis->cli('HGET', 'app2:e:95', 'note'), 'e95', 'app2:e:95 (deleted by it) is back');

my $marker = $node->safe_psql('postgres',
	"SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'app2') FROM pg_control_system()");
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 10),
	"app2's in-flight marker is cleared");
ok( defined RedisSync::Compare::wait_for(
		sub {
			substr(slurp_file($node->logfile), $log_offset) =~
			  /\[(\d+)\] LOG:  redis_sync worker: repaired \d+ keys pushed by transaction/;
		},
		10),
	'a worker logged the repair');
$log = substr(slurp_file($node->logfile), $log_offset);
my ($repairer) = $log =~ /\[(\d+)\] LOG:  redis_sync worker: repaired \d+ keys pushed by transaction/;
is( $node->safe_psql('postgres',
		"SELECT database FROM redis_sync.worker_stats WHERE worker_pid = $repairer"),
	'app2', "the repair was done by app2's worker");

RedisSync::Compare::cache_matches_table($node, $redis,
	dbname      => 'postgres',
	table       => 'p',
	prefix      => 'pg:p:',
	key_columns => ['id'],
	columns     => [ 'id', 'v', 'note' ],
	name        => 'postgres: its table untouched');

$node->stop;
done_testing();

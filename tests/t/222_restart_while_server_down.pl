# Redis restarts from an older snapshot while Postgres is down (a host that
# reboots both, a power loss, a maintenance window): the keys it brings
# back hold the values of that moment.  The worker learns of a Redis restart
# from a run_id change, but the run_id it compares with lives in shared
# memory, lost with the server: its first probe after the start records the
# new run_id as if nothing happened, and nothing refreshes the keys (worker.c
# probe(), worker_signal.c rs_redis_run_id_changed()).
#
# Found by the wave 2l review.  Expected: the worker tells the restart (the
# run_id it last handled kept across server restarts) and refreshes the
# keys as after a restart it saw (tests/t/215).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('restart_while_down', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE w (id int PRIMARY KEY, v text);
INSERT INTO w SELECT g, 'old ' || g FROM generate_series(1, 100) g;
SELECT redis_sync.write_through('w', key_prefix => 'w:', warm => false);
SELECT redis_sync.warm('w');
});
# the worker has probed Redis (its run_id is known)
ok(defined RedisSync::Compare::wait_for(sub {
	$node->safe_psql('postgres', q{SELECT coalesce(redis_run_id, '') FROM redis_sync.worker_stats LIMIT 1}) ne '' }, 30),
	'the worker knows the run_id');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
$node->safe_psql('postgres', q{UPDATE w SET v = 'new ' || id WHERE id <= 50; DELETE FROM w WHERE id > 90;});
is($redis->cli('HGET', 'w:1', 'v'), 'new 1', 'the update reached Redis');

foreach my $mode ('fast', 'immediate')
{
	$node->stop($mode);
	$redis->stop;
	$redis->start;
	is($redis->cli('HGET', 'w:1', 'v'), 'old 1', "$mode: Redis is back with the snapshot");
	$node->start;

	my $secs = RedisSync::Compare::wait_for(sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('w')}) eq '0' }, 30);
	ok(defined $secs, "$mode: no stale or deleted row cached after the restart")
	  or diag($node->safe_psql('postgres',
		q{SELECT string_agg(key || ' ' || problem, ', ' ORDER BY key) FROM redis_sync.verify('w')}));
	is($redis->cli('HGET', 'w:1', 'v'), 'new 1', "$mode: an updated row has its new value");
	is($redis->cli('EXISTS', 'w:100'), '0', "$mode: a deleted row's key is gone");
}

# a server restart with Redis still running is no Redis restart: nothing to
# refresh, and the worker says nothing of one
my $log_before = -s $node->logfile;
$node->restart;
ok(defined RedisSync::Compare::wait_for(sub {
	$node->safe_psql('postgres', q{SELECT coalesce(redis_run_id, '') FROM redis_sync.worker_stats LIMIT 1}) ne '' }, 30),
	'the worker probed Redis again');
sleep 2;
my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $log_before);
unlike($log, qr/Redis at \S+ restarted/, 'no Redis restart seen when only the server restarted');

done_testing();

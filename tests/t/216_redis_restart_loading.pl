# Redis restarts with a dataset to load (RDB or AOF): it accepts connections
# and answers INFO at once, but replies LOADING to most other commands until
# the load is done.  The worker's probe treats a loading Redis as not there
# yet (INFO persistence, loading:1), and the work after a restart (the key
# prefix claims, the refresh and re-warm, the re-seed) stays pending in
# shared memory until it succeeds (worker.c restart_step).
#
# Found by the wave 2k soak: the worker saw the new run_id during the load,
# ran all three at once, all failed with LOADING, and none was tried again:
# a row inserted after the snapshot stayed missing, and the claim of a table
# synced after the snapshot was never recorded again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(sleep);

# key-load-delay (microseconds per key loaded) makes the load last seconds
my $redis = RedisSync::Test::redis_object(
	extra => [ '--key-load-delay', '100', '--loading-process-events-interval-bytes', '1024' ]);
$redis->start;
my $node = RedisSync::Test::new_node('loading', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE w (id int PRIMARY KEY, v text);
INSERT INTO w VALUES (1, 'one');
SELECT redis_sync.write_through('w', key_prefix => 'w:', warm => false);
SELECT redis_sync.warm('w');
});
# filler for the load to take a while (20,000 keys x 100 us = 2 s)
$redis->cli('EVAL', q{for i = 1, 20000 do redis.call('SET', 'filler:' .. i, 'x') end return 1}, 0);
is($redis->cli('SAVE'), 'OK', 'snapshot taken');

$node->safe_psql('postgres', q{
INSERT INTO w VALUES (2, 'after the snapshot');
CREATE TABLE w2 (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('w2', key_prefix => 'later:');
});
is($redis->cli('HGET', 'w:2', 'v'), 'after the snapshot', 'row 2 pushed');

my $old_run_id = $node->safe_psql('postgres', 'SELECT redis_run_id FROM redis_sync.worker_stats LIMIT 1');
$redis->stop;
$redis->start;    # returns once Redis answers PING, i.e. has loaded
is($redis->cli('GET', 'filler:1'), 'x', 'Redis has loaded the snapshot');

my $deadline = time + 60;
my ($cached, $claimed) = (0, 0);
while (time < $deadline)
{
	$cached = $node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('w')}) eq '0';
	$claimed = ($redis->cli('HGET', 'redis_sync:claims', 'p:later:') =~ /w2/) ? 1 : 0;
	last if $cached && $claimed;
	sleep 0.2;
}
ok($node->safe_psql('postgres', 'SELECT redis_run_id FROM redis_sync.worker_stats LIMIT 1') ne $old_run_id,
	'the worker saw the restart');
ok($cached, 'the re-warm filled the row missing from the snapshot')
  or diag($node->safe_psql('postgres', q{SELECT string_agg(key || ' ' || problem, ', ') FROM redis_sync.verify('w')}));
ok($claimed, 'the claim of the table synced after the snapshot is recorded again');
ok($node->log_contains('is loading its dataset; waiting for it'), 'the worker waited for the load (logged once)');
ok(!$node->log_contains('could not record the key prefix claim'), 'no claim failed with LOADING');

done_testing();

# Review of af503d2: a fast shutdown during a background warm batch
# (write-through table whose owner's policy takes 0.5 s a row) cancels the
# batch, and record_failure() stores the shutdown as a failed attempt in
# redis_sync._warm_queue: attempts + 1, last_error "a batch was cancelled
# at shutdown", retry_at = ten times what the batch ran.  That survives
# the restart: the warm waits (up to an hour) after it, though nothing
# failed.  Before the commit the batch finished within pg_ctl's wait.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time sleep);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('warm_shutdown', redis => $redis);

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('slow', column => 'slow', initial => 'true',
		then => q{PERFORM pg_catalog.pg_sleep(0.5);}) . q{
CREATE TABLE wt (id int PRIMARY KEY, v text);
INSERT INTO wt SELECT g, 'v' || g FROM generate_series(1, 10) g;
}
	. RedisSync::OwnerCode::forced_policy_sql('wt', 'p', 'public.slow()'));
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
$node->safe_psql('postgres', q{SELECT redis_sync.write_through('wt', key_prefix => 'wt:')});
ok(RedisSync::WB::worker_sleeping($node),
	'the worker is in the warm batch');
# a few rows into the batch: a failure is held ten times what it ran
sleep 3;
my $log_offset = -s $node->logfile;
$node->stop('fast');
like(substr(slurp_file($node->logfile), $log_offset), qr/warming table \d+ stopped: a batch was cancelled at shutdown/,
	'log: the warm stopped at shutdown');

$node->start;
my $row = $node->safe_psql('postgres', q{
	SELECT attempts, coalesce(last_error, '-'),
	       coalesce(round(extract(epoch FROM retry_at - clock_timestamp())), 0), finished_at IS NOT NULL
	  FROM redis_sync._warm_queue WHERE relid = 'wt'::regclass});
diag("after the restart: attempts|last_error|retry in s|finished: $row");
my ($attempts, $err, $retry_in, $finished) = split /\|/, $row;
is($attempts, 0, 'the shutdown is not counted as a failed attempt of the warm');
cmp_ok($retry_in, '<=', 1, 'the warm does not wait after the restart for a failure that was a shutdown');

$node->stop;
$redis->stop;
done_testing();

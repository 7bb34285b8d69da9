# The worker's refresh after a Redis restart is one SCAN pass for every
# write-through table (keys_sql.c rs_refresh_cached_keys).  When Redis
# stops answering in the middle of it for longer than command_timeout (a
# stall on a loaded machine), the pass fails as a whole and the restart's
# work is retried (worker.c restart_step).  The retry takes the pass up
# after the last page whose keys were all pushed, with what each table had
# done: it does not scan again, nor push again, the pages done before the
# failure.
#
# Before, the retry began the pass again from the first page: bench 4b (100
# tables of 1,000 rows, restarted from an RDB) made 227 SCAN calls once
# where one pass makes 200, and so does this test (the pages before the
# stall, then a whole pass).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Restart;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_resume', redis => $redis,
	extra_conf => "redis_sync.command_timeout = '1s'\n");

my $rows   = 50000;
my @tables = map { "t$_" } 1 .. 4;
RedisSync::Restart::snapshot_tables($node, $redis, \@tables, $rows);
is($redis->cli('HGET', 't1:1001', 'v'), 'new 1001', 'the updates reached Redis');

# restart from the snapshot, the worker paused until the pass is measured
my $offset = -s $node->logfile;
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$redis->stop;
$redis->start;
my $pass = $redis->scan_pass_pages();
cmp_ok($pass, '>=', 300, "one pass of the restarted Redis is $pass SCAN pages");
$redis->cli('CONFIG', 'RESETSTAT');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');

# a quarter into the pass, Redis stops answering
my $at = int($pass / 4);
my $before;
ok(defined RedisSync::Compare::wait_for(sub { ($before = $redis->cmd_calls('scan')) >= $at }, 120, 0.001),
	"the pass reached $at SCAN pages");
kill 'STOP', $redis->{pid};
ok(defined RedisSync::Compare::wait_for(
		sub { $node->log_contains('refreshing 4 tables after the Redis restart failed', $offset) },
		120),
	'the stopped Redis ended the pass');
kill 'CONT', $redis->{pid};

my $done = RedisSync::Compare::wait_for(sub {
		my @r = substr(slurp_file($node->logfile), $offset) =~ /re-warmed \d+ keys of table/g;
		return @r >= 4 }, 120);
ok(defined $done, 'every table is refreshed and re-warmed after Redis came back');
my $calls = $redis->cmd_calls('scan');
my $log   = substr(slurp_file($node->logfile), $offset);
note(join("\n", grep { /redis_sync worker/ } split /\n/, $log));
cmp_ok($before, '<', $pass, "Redis was stopped in the middle of the pass ($before of $pass pages)");
like($log, qr/HINT:  The retry takes the pass up after the last keys it pushed/,
	'the failed pass is taken up by the retry');
unlike($log, qr/refreshing table \d+ after the Redis restart failed/, 'no table failed on its own');

# the retry scanned the pages after the last push, not the pass again
cmp_ok($calls, '<', $pass + $at / 2,
	"the refresh made $calls SCAN calls: one pass ($pass), and not again the $before pages before the stop");
my @refreshed = $log =~ /refreshed (\d+) cached keys of table/g;
is(scalar @refreshed, 4, 'each table is refreshed once');
# each table's keys, once: the snapshot's $rows, less any key of a deleted
# row (50 per table) that the push under way when Redis stopped deleted
# (its outcome is unknown to the worker, and Redis ran it once it went on:
# the retry does not find that key, and counts it no more)
ok(!grep({ $_ > $rows || $_ < $rows - 50 } @refreshed),
	"each table refreshed the $rows keys the snapshot held of it, once (" . join(',', @refreshed) . ')');
for my $t (@tables)
{
	is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('$t')"), '0', "$t: cache == table");
	is($redis->cli('HGET', "$t:1001", 'v'), 'new 1001', "$t: a stale key is pushed again");
	is($redis->cli('EXISTS', "$t:1002"), '0', "$t: a deleted row's key is gone");
}

done_testing();

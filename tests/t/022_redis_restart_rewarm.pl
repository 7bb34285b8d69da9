# Redis restarted empty.  The worker notices the new run_id (INFO server),
# logs "Redis at ... restarted (run_id ...)" and, with
# redis_sync.rewarm_on_restart = on (the default), re-warms every
# write-through table, so cache == table again without any write.  With the
# setting off (ALTER SYSTEM + reload) the restart is only logged, the cache
# stays empty, and redis_sync.warm() repopulates it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;
use Time::HiRes qw(time);

my $ROWS = 500;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('rewarm', redis => $redis);

my $t = RedisSync::Synced::synced_table($node, 't',
	fill => "SELECT g, g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'n' || g END
  FROM generate_series(1, $ROWS) g");
# an invalidate table is not re-warmed (it has no cached values to restore)
RedisSync::Synced::synced_table($node, 'inv', columns => 'id int PRIMARY KEY, v int',
	policy => 'invalidate', fill => 'SELECT g, g FROM generate_series(1, 20) g');
$t->cache_matches($redis, name => 'table cached');

sub run_id
{
	my ($id) = $redis->cli('INFO', 'server') =~ /run_id:(\w+)/;
	return $id;
}

sub count_keys { return RedisSync::Synced::count_keys($redis, $_[0]); }

my $rid0 = run_id();
ok( $node->poll_query_until('postgres',
		"SELECT redis_run_id = '$rid0' FROM redis_sync.worker_stats"),
	'worker knows the current run_id');

# 1. restart Redis empty; the worker re-warms
my $log_offset = -s $node->logfile;
# the worker is paused while the test looks at the empty Redis (it re-warms
# within milliseconds of noticing the restart)
$node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()');
$redis->stop;
$redis->start;
my $rid1 = run_id();
isnt($rid1, $rid0, 'Redis restarted with a new run_id');
is(count_keys('t:*'), 0, 'Redis is empty');
my $t0 = time;
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
my $w = $t->wait_cache_matches($redis,
	timeout => 30,
	name    => 'worker re-warmed the table after the restart: cache == table');
diag(sprintf('Redis restart (empty) to cache == table for %d rows: %.2fs', $ROWS, time - $t0))
  if defined $w;
ok( $node->poll_query_until('postgres',
		"SELECT redis_run_id = '$rid1' FROM redis_sync.worker_stats"),
	'worker_stats.redis_run_id shows the new run_id');
my $log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/restarted \(run_id \Q$rid1\E, was \Q$rid0\E\)/,
	"node log: 'restarted (run_id $rid1, was $rid0)'");
like($log, qr/re-warmed $ROWS keys of table/, "node log: re-warmed $ROWS keys");
is(count_keys('inv:*'), 0, 'invalidate table not re-warmed');
is($node->safe_psql('postgres',
		q{SELECT warmed >= } . $ROWS . q{ FROM redis_sync.stats WHERE "table" = 't'::regclass}),
	't', 'stats: warmed counts the re-warm');

# writes keep working and stay in step
$node->safe_psql('postgres', "UPDATE t SET v = -v WHERE id % 7 = 0; DELETE FROM t WHERE id > 490;");
$t->cache_matches($redis,
	name => 'cache == table after writes following the re-warm');

# 2. rewarm_on_restart = off: the cache stays empty until warm()
$node->safe_psql('postgres', 'ALTER SYSTEM SET redis_sync.rewarm_on_restart = off');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
# the worker reloads its configuration at the top of its next round
my $rounds = RedisSync::Compare::worker_stat($node, 'worker_rounds');
ok( $node->poll_query_until('postgres',
		"SELECT worker_rounds >= $rounds + 2 FROM redis_sync.worker_stats"),
	'worker went through two rounds after the reload');

$log_offset = -s $node->logfile;
$redis->stop;
$redis->start;
my $rid2 = run_id();
ok( $node->poll_query_until('postgres',
		"SELECT redis_run_id = '$rid2' FROM redis_sync.worker_stats"),
	'worker noticed the second restart (new run_id in worker_stats)');
$rounds = RedisSync::Compare::worker_stat($node, 'worker_rounds');
ok( $node->poll_query_until('postgres',
		"SELECT worker_rounds >= $rounds + 2 FROM redis_sync.worker_stats"),
	'worker went through two more rounds');
is(count_keys('t:*'), 0, 'rewarm_on_restart = off: cache stays empty');
$log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/restarted \(run_id \Q$rid2\E, was \Q$rid1\E\)/, 'restart logged');
like($log, qr/rewarm_on_restart is off; run redis_sync.resync\(\) to repair and redis_sync.warm\(\)/,
	'log hints at redis_sync.resync() and warm()');
unlike($log, qr/re-warmed \d+ keys/, 'no re-warm logged');

my $nrows = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
is($node->safe_psql('postgres', "SELECT redis_sync.warm('t')"),
	$nrows, "redis_sync.warm('t') pushed $nrows rows");
$t->cache_matches($redis,
	name => 'cache == table after warm()');

$node->stop;
done_testing();

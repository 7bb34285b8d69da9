# The outbox delivery at shutdown: the worker's final round delivered the
# whole outbox whatever redis_sync.shutdown_drain_timeout said, so a large
# backlog (after an outage, a pause) held a fast shutdown for as long as its
# delivery took.  Now the delivery of the round under way stops at the
# SIGTERM, and the final round's at its deadline; what is left stays in the
# outbox and is delivered after the restart (nothing lost).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time);

my $ROWS = 600_000;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('outbox_shutdown', redis => $redis,
	extra_conf => "redis_sync.shutdown_drain_timeout = '500ms'\n");

$node->safe_psql('postgres', q{
CREATE TABLE a (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async');
});
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause(30000)'), 't', 'worker paused');
$node->safe_psql('postgres', "INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, $ROWS) g");
my $queued = $node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox');
cmp_ok($queued, '>', 0, 'the changes wait in the outbox');

# the worker resumes, starts delivering, and is stopped at once
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'a:1', 'v') eq 'v1' }, 30),
	'the delivery has begun');
my $log_offset = -s $node->logfile;
my $t0 = time;
$node->stop('fast');
my $stop = time - $t0;
my $in_redis = $redis->cli('DBSIZE');
diag(sprintf('pg_ctl stop -m fast with %d outbox entries queued: %.1f s; keys in Redis then: %d',
	$queued, $stop, $in_redis));
cmp_ok($stop, '<', 4, 'the server stops within about shutdown_drain_timeout');
cmp_ok($in_redis, '<', 2 * $ROWS, 'the rest is left in the outbox');
like(substr(slurp_file($node->logfile), $log_offset), qr/final drain at shutdown applied/,
	'the final round ran');

# nothing lost: the rest is delivered after the restart
$node->start;
ok(defined RedisSync::Compare::wait_for(sub {
	$node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox') eq '0' }, 120),
	'after the restart the outbox is delivered');
is($redis->cli('HGET', "a:$ROWS", 'v'), "v$ROWS", 'the last row is in Redis');
is($redis->cli('EVAL', "return #redis.call('KEYS', 'a:*')", '0') >= $ROWS ? 'all' : 'missing', 'all',
	'every row is in Redis');

$node->stop;
$redis->stop;
done_testing();

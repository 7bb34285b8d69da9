# A counter key the application created from nothing (no {K}:rs_seeded
# marker) takes the increment path: the drain adds its value to the table's
# and, before it commits, corrects Redis with HINCRBY K field <table's
# previous value>.  Here Redis restarts empty (no persistence) while that
# batch is being written (a trigger waits on an advisory lock the test
# holds).  The correction then ran on the new, empty Redis: it created the
# key at the table's previous value alone (97), set the marker, and the
# batch committed 100.  Redis (97, "seeded") and the table (100) disagree
# for good: the re-seed leaves an existing key alone, and the next
# increment's absolute drain writes 98 over the table's 100, so the counter
# goes backwards by increments the table had committed (README guarantee 4:
# counters never go backwards when Redis loses its data).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbcorrect', redis => $redis);

$node->safe_psql(
	'postgres', q{
CREATE TABLE stats (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0, title text);
INSERT INTO stats VALUES (42, 97, 'answer');
CREATE FUNCTION public.stats_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(4242);
  RETURN NEW;
END $$;
CREATE TRIGGER stats_wait BEFORE UPDATE ON stats FOR EACH ROW EXECUTE FUNCTION public.stats_wait();
SELECT redis_sync.write_behind('stats', key_prefix => 'stats:', counters => '{view_count}',
                               flush_interval => '100 ms');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# the test holds the lock the drain's trigger waits for
my $holder = RedisSync::Test::session($node);
$holder->query('SELECT pg_advisory_lock(4242)');

# the application creates the key from nothing: three increments
for (1 .. 3)
{
	$redis->cli('HINCRBY', 'stats:42', 'view_count', 1);
	$redis->cli('SADD', 'stats:dirty', '42');
}

# the drain's batch is in its UPDATE, waiting on the lock
ok( defined RedisSync::Compare::wait_for(
		sub {
			sql(q{SELECT count(*) FROM pg_stat_activity
			      WHERE backend_type LIKE 'redis_sync%' AND wait_event = 'advisory'}) > 0;
		},
		60),
	'the drain batch waits in the table trigger');

# Redis loses its data under the batch
$redis->stop;
$redis->start;

$holder->query('SELECT pg_advisory_unlock(4242)');

# the batch either commits or is rolled back and not retried (its members
# were lost with Redis); wait for the worker to have settled: the key
# exists again (correction or re-seed) and nothing is in flight
ok( defined RedisSync::Compare::wait_for(
		sub {
			$redis->cli('EXISTS', 'stats:42') eq '1'
			  && sql(q{SELECT count(*) FROM pg_stat_activity
			           WHERE backend_type LIKE 'redis_sync%' AND wait_event = 'advisory'}) == 0;
		},
		60),
	'the key is back in Redis');
sql('SELECT redis_sync.flush()');
my $table = sql('SELECT view_count FROM stats WHERE id = 42');
my $cache = $redis->cli('HGET', 'stats:42', 'view_count');
note("table $table, Redis $cache");
is($cache, $table, 'Redis holds the counter the table committed');

# one more increment: the counter must not go below what the table had
$redis->cli('HINCRBY', 'stats:42', 'view_count', 1);
$redis->cli('SADD', 'stats:dirty', '42');
# a batch rolled back after running long waits ten times its run before
# its retry (drain_timeout in README): wait for the increment to land
RedisSync::Compare::wait_for(
	sub {
		$redis->cli('SCARD', 'stats:dirty') eq '0'
		  && $redis->cli('SCARD', '{stats:dirty}:rs_processing') eq '0'
		  && sql('SELECT view_count FROM stats WHERE id = 42') != $table;
	},
	90);
my $after = sql('SELECT view_count FROM stats WHERE id = 42');
is($after, $table + 1, 'the next increment adds one to the table\'s counter (never backwards)');
is($redis->cli('HGET', 'stats:42', 'view_count'), $after, 'Redis equals the table');
is(sql('SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letters');

$holder->quit;
done_testing();

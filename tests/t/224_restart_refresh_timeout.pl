# The worker's refresh after a Redis restart runs each table's code as its
# owner (the key columns' domain checks, the casts and policies of the
# fill).  Like the background warm's batches (redis_sync.warm_timeout), it
# must not hold the worker, and with it every other table's delivery,
# longer than warm_timeout (README, Limitations: "up to drain_timeout /
# warm_timeout once per ten times that timeout").
#
# Found by the wave 2l review: the restart's refresh ran without a time
# limit, so a table whose domain check blocks held the worker, and no async
# change of any other table was delivered.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_timeout', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '2s'\n");

$node->safe_psql('postgres', q{
CREATE TABLE public.flag (on_ boolean);
CREATE FUNCTION slow_check(int) RETURNS boolean LANGUAGE sql AS
$$ SELECT true FROM (SELECT pg_catalog.pg_sleep(CASE WHEN EXISTS (SELECT FROM public.flag) THEN 60 ELSE 0 END)) s $$;
CREATE DOMAIN slow_int AS int CHECK (public.slow_check(VALUE));
CREATE TABLE slow_t (id slow_int PRIMARY KEY, v text);
INSERT INTO slow_t SELECT g, 'v' || g FROM generate_series(1, 5) g;
SELECT redis_sync.write_through('slow_t', key_prefix => 'slow:', warm => false);
SELECT redis_sync.warm('slow_t');
CREATE TABLE fast_t (id int PRIMARY KEY, v text);
INSERT INTO fast_t VALUES (1, 'before');
SELECT redis_sync.write_through('fast_t', key_prefix => 'fast:', delivery => 'async', warm => false);
});
is($redis->cli('HGET', 'slow:1', 'v'), 'v1', 'slow_t is cached');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
$node->safe_psql('postgres', q{INSERT INTO public.flag VALUES (true)});

$redis->stop;
$redis->start;
# the worker sees the restart and starts refreshing slow_t (its domain check blocks)
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('Redis at \S+ restarted') }, 30),
	'the worker saw the restart');
sleep 1;
$node->safe_psql('postgres', q{UPDATE fast_t SET v = 'after' WHERE id = 1});
my $secs = RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'fast:1', 'v') eq 'after' }, 20);
ok(defined $secs, 'another table\'s async change is delivered while slow_t\'s code blocks')
  or diag(`grep -E 'restart|refresh|warm_timeout' ${\ $node->logfile} | tail -10`);
ok($node->log_contains('warm_timeout'), 'the cancelled refresh is logged');

# once the table's code stops blocking, its refresh is done on a later try
$node->safe_psql('postgres', q{DELETE FROM public.flag});
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('refreshed \d+ cached keys of table ' . $node->safe_psql('postgres', q{SELECT 'slow_t'::regclass::oid})) }, 90),
	'slow_t is refreshed later');

done_testing();

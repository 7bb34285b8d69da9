# The worker's refresh after a Redis restart runs each table's code as its
# owner (the key columns' domain checks); redis_sync.warm_timeout bounds
# how long one table's refresh may hold the worker (tests/t/224; README,
# Limitations: "up to drain_timeout / warm_timeout once per ten times that
# timeout").  Since the refresh of every table is one SCAN pass
# (keys_sql.c rs_refresh_cached_keys), a table's keys are pushed in many
# parts, one per REFRESH_PENDING keys of all tables: the bound must hold for
# the table's whole refresh, not for each part.
#
# Found by the wave 2o review (rev3): the timeout was armed afresh for each
# part, so a table whose code takes a little less than warm_timeout per part
# held the worker, and every other table's delivery, for as many parts as
# the pass has (here 1,000 keys at 10 ms: 10 s with warm_timeout 2 s,
# instead of a cancel after 2 s and a retry 20 s later).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_timeout_total', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '2s'\n");

$node->safe_psql('postgres', q{
CREATE TABLE public.flag (on_ boolean);
CREATE FUNCTION slow_check(int) RETURNS boolean LANGUAGE sql AS
$$ SELECT true FROM (SELECT pg_catalog.pg_sleep(CASE WHEN EXISTS (SELECT FROM public.flag) THEN 0.01 ELSE 0 END)) s $$;
CREATE DOMAIN slow_int AS int CHECK (public.slow_check(VALUE));
CREATE TABLE slow_t (id slow_int PRIMARY KEY, v text);
INSERT INTO slow_t SELECT g, 'v' || g FROM generate_series(1, 1000) g;
SELECT redis_sync.write_through('slow_t', key_prefix => 'slow:', warm => false);
SELECT redis_sync.warm('slow_t');
CREATE TABLE big_t (id int PRIMARY KEY, v text);
INSERT INTO big_t SELECT g, 'v' || g FROM generate_series(1, 100000) g;
SELECT redis_sync.write_through('big_t', key_prefix => 'big:', warm => false);
SELECT redis_sync.warm('big_t');
});
is($redis->cli('HGET', 'slow:1', 'v'), 'v1', 'slow_t is cached');
is($redis->cli('HGET', 'big:1', 'v'), 'v1', 'big_t is cached');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
my $slow = $node->safe_psql('postgres', q{SELECT 'slow_t'::regclass::oid});
$node->safe_psql('postgres', q{INSERT INTO public.flag VALUES (true)});

my $offset = -s $node->logfile;
$redis->stop;
$redis->start;
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('Redis at \S+ restarted', $offset) }, 30),
	'the worker saw the restart');
# the first pass ends: slow_t either refreshed (its code held the worker
# 10 s) or cancelled at warm_timeout
ok(defined RedisSync::Compare::wait_for(
		sub { $node->log_contains("(refreshed \\d+ cached keys of table|refreshing table) $slow ", $offset) }, 90),
	'the first pass is over');
my $log = substr(slurp_file($node->logfile), $offset);
like($log, qr/refreshing table $slow after the Redis restart failed: its refresh took longer than redis_sync.warm_timeout/,
	"slow_t's refresh, 10 s of its code in all, is cancelled at warm_timeout")
  or diag(join("\n", grep { /refresh|warm/ } split /\n/, $log));

# once the table's code is fast again, its refresh is done on a later try
$node->safe_psql('postgres', q{DELETE FROM public.flag});
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains("refreshed \\d+ cached keys of table $slow ", $offset) }, 90),
	'slow_t is refreshed later');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('slow_t')}), '0', 'slow_t: cache == table');

done_testing();

# The worker's refresh after a Redis restart (keys_sql.c
# rs_refresh_cached_keys) holds the keys of its SCAN pass until
# pending_max of them wait, then pushes them: 100 keys per table refreshed,
# from 5,000 up to 100,000 (b078744).  A count bounds the memory only for
# short keys: with 600 tables refreshed, 60,000 keys of 2 kB each were held
# at once (120 MB), and the part that pushed them built their pairs too
# (as much again), where 5,000 keys were held before.
#
# Found by the wave 2p review: the worker grew by 508 MB in this test
# (70 MB with 5,000 keys at a time, most of it the 600 tables' configs and
# relations); the keys waiting are now pushed when their bytes reach
# REFRESH_PENDING_BYTES (8 MB) as well: 65 MB.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_long_keys', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

my $ntabs = 600;
my $n     = 60000;
# one invalidate table with long keys, and 599 others with nothing cached:
# the refresh's pending_max is 100 keys per table, 60,000
$node->safe_psql('postgres', qq{
CREATE TABLE big (id text PRIMARY KEY, v text);
SELECT redis_sync.invalidate('big', key_prefix => 'big:');
INSERT INTO big VALUES (repeat('x', 2000) || '1', 'row one');
DO \$\$
BEGIN
  FOR i IN 2 .. $ntabs LOOP
    EXECUTE format('CREATE TABLE e%s (id int PRIMARY KEY, v text)', i);
    PERFORM redis_sync.invalidate(format('e%s', i)::regclass, key_prefix => format('e%s:', i));
  END LOOP;
END
\$\$;
});
# 2 kB keys of rows that are not there (the refresh deletes them) but one
$redis->cli('EVAL', "local p = 'big:' .. string.rep('x', 2000); "
	  . "for i = 1, $n do redis.call('HSET', p .. i, 'v', 'cached') end", '0');
ok($redis->cli('DBSIZE') >= $n, 'the long keys are cached');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'redis_sync worker%' LIMIT 1});
ok($pid =~ /^\d+$/, "the worker's pid ($pid)");
my $before = RedisSync::Test::vmhwm_kb($pid);
my $offset = -s $node->logfile;

$redis->stop;
$redis->start;
ok(defined RedisSync::Compare::wait_for(
		sub { substr(slurp_file($node->logfile), $offset) =~ /refreshed \d+ cached keys of table \d+/ }, 300),
	'the refresh ended');
my $key = 'big:' . ('x' x 2000);
is($redis->cli('HGET', $key . '1', 'v'), 'row one', 'the refresh pushed the row again');
is($redis->cli('EXISTS', $key . '2'), '0', 'and deleted the keys of rows that are not there');
my $after = RedisSync::Test::vmhwm_kb($pid);
my $grew_mb = int(($after - $before) / 1024);
diag("worker peak resident memory: $before kB before the refresh, $after kB after (+$grew_mb MB)");
cmp_ok($grew_mb, '<', 150, "the refresh of $n keys of 2 kB did not hold them all at once");

done_testing();

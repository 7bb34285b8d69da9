# The worker's refresh after a Redis restart (keys_sql.c
# rs_refresh_cached_keys) pushes every cached key of a table again from its
# row, 1,000 rows per batch (warm_push.c rs_push_named).  Its memory must
# not grow with the table's data: each batch's encoded rows are freed after
# the batch, as the background warm's are (warm.c, its batch context).
#
# Found by the wave 2l review: rs_push_named kept every batch's query,
# lists and encoded rows until the end of the transaction, so the refresh of
# a table held all of its cached data in the worker at once (a table whose
# cache is larger than the machine's memory got the worker killed, and
# with it every session of the server).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_memory', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

# 60,000 rows of 2,000 bytes: 120 MB of cached values
$node->safe_psql('postgres', q{
CREATE TABLE big (id int PRIMARY KEY, v text);
INSERT INTO big SELECT g, repeat(md5(g::text), 62) || g FROM generate_series(1, 60000) g;
SELECT redis_sync.write_through('big', key_prefix => 'big:', warm => false);
SELECT redis_sync.warm('big');
});
is($redis->cli('DBSIZE') >= 60000 ? 'yes' : 'no', 'yes', 'the rows are cached');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
$node->safe_psql('postgres', q{UPDATE big SET v = 'new' WHERE id = 1});

my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name = 'redis_sync worker' OR backend_type LIKE 'redis_sync worker%' LIMIT 1});
ok($pid =~ /^\d+$/, "the worker's pid ($pid)");
sub hwm_kb
{
	my $status = PostgreSQL::Test::Utils::slurp_file("/proc/$pid/status");
	return $status =~ /VmHWM:\s+(\d+) kB/ ? $1 : -1;
}
my $before = hwm_kb();

$redis->stop;
$redis->start;
is($redis->cli('HGET', 'big:1', 'v') eq 'new' ? 'new' : 'old', 'old', 'Redis is back with the snapshot');
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('re-warmed \d+ keys of table \d+') }, 180),
	'the refresh and re-warm ended');
is($redis->cli('HGET', 'big:1', 'v'), 'new', 'the refresh pushed the row again');
my $after = hwm_kb();
my $grew_mb = int(($after - $before) / 1024);
note("worker peak resident memory: $before kB before the refresh, $after kB after (+$grew_mb MB)");
cmp_ok($grew_mb, '<', 60, 'the refresh of 120 MB of cached values did not grow the worker by as much');

done_testing();

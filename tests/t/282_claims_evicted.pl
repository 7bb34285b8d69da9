# The key prefix claims live in one Redis hash, redis_sync:claims.  Under
# a maxmemory-policy of allkeys-* (which write-through tables allow) Redis
# evicts it like any other key, and then a table of another database (or
# server) could claim an overlapping prefix: two tables writing and
# purging the same keys, each one's rows cached as the other's.
#
# Before: the worker recorded the claims again only after a Redis restart,
# so an evicted claims hash stayed gone and the overlapping sync was
# accepted.  Now the worker's probe (once a second) sees the hash gone and
# records its database's claims again.  Found by the wave 2p chaos run.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(sleep);

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('claims_evicted', redis => $redis);

$node->safe_psql('postgres', q{
CREATE DATABASE other;
CREATE TABLE w (id int PRIMARY KEY, v text);
INSERT INTO w SELECT g, 'row ' || g FROM generate_series(1, 100) g;
SELECT redis_sync.write_through('w', key_prefix => 'w:');
});
$node->safe_psql('other', q{
CREATE EXTENSION redis_sync;
CREATE TABLE x (id int PRIMARY KEY, v text);
});
is($redis->cli('HEXISTS', 'redis_sync:claims', 'p:w:'), '1', 'the prefix w: is claimed');
my ($rc, $out, $err) = $node->psql('other', q{SELECT redis_sync.write_through('x', key_prefix => 'w:')});
like($err, qr/overlaps key prefix "w:" claimed by table public.w/, 'another database cannot claim w:');

# allkeys-lru at a small maxmemory: filler keys until Redis evicted the
# claims hash (its least recently used keys go first)
my ($used) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
$redis->cli('CONFIG', 'SET', 'maxmemory', $used + 200 * 1024);
my $logpos = -s $node->logfile;
my $gone = 0;
for my $i (1 .. 500)
{
	$redis->cli('EVAL',
		"for i = 1, 50 do redis.call('SET', 'filler:' .. ARGV[1] .. ':' .. i, string.rep('z', 2000)) end return 1",
		'0', $i);
	if ($redis->cli('EXISTS', 'redis_sync:claims') eq '0')
	{
		$gone = 1;
		last;
	}
}
ok($gone, 'Redis evicted the claims hash');
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');

# the worker records the claims again (its probe runs once a second)
my $deadline = time + 20;
while (time < $deadline && $redis->cli('HEXISTS', 'redis_sync:claims', 'p:w:') ne '1')
{
	sleep 0.1;
}
is($redis->cli('HEXISTS', 'redis_sync:claims', 'p:w:'), '1', 'the worker claims w: again');
($rc, $out, $err) = $node->psql('other', q{SELECT redis_sync.write_through('x', key_prefix => 'w:')});
isnt($rc, 0, 'another database still cannot claim w:');
like($err, qr/overlaps key prefix "w:" claimed by table public.w/, '... refused with the holder named');
ok($node->wait_for_log(qr/the key prefix claims were gone from Redis/, $logpos),
	'the worker logs that the claims were gone');

$node->stop;
$redis->stop;
done_testing();

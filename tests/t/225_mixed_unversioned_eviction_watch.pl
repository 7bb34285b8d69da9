# A table write-through and write-behind over one hash.  A write that finds
# its hash without a version and holding none of its fields (only
# write-behind fields) is written like a missing key (fence.c, own_fields).
# A missing key is guarded by the eviction watch: a write from before the
# last eviction Redis reported does not create it (README guarantee 6).
# The hash of others' fields must be guarded the same way: its version can
# be gone by eviction too -- a tombstone has a TTL, so under the
# volatile-* policies write-behind allows it is the first key to go.
#
# Found by the wave 2l review: the "others' fields only" case skipped the
# eviction watch, so an older write delivered late (an outbox entry held
# or retried) wrote a deleted row's write-through field back beside the
# write-behind field the application wrote after the delete; the drain
# then brought the row back and the cache held the deleted row's value.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('mixed_watch', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE mx (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('mx', key_prefix => 'mx:', columns => '{v}', warm => false);
SELECT redis_sync.write_behind('mx', key_prefix => 'mx:', dirty_set => 'mx-dirty',
                               columns => '{n}', flush_interval => '1 h');
INSERT INTO mx VALUES (1, 'deleted value');
DELETE FROM mx WHERE id = 1;
});
is($redis->cli('EXISTS', 'mx:1'), '0', 'the DELETE removed the hash');
is($redis->cli('EXISTS', '{mx:1}:rs_version'), '1', '... and left its tombstone');

# memory pressure under volatile-ttl (write-behind allows volatile-*): the
# tombstone, the key with the nearest expiry, is evicted first
my $used = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/ ? $1 : die 'no used_memory';
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'volatile-ttl');
$redis->cli('CONFIG', 'SET', 'maxmemory', $used + 2 * 1024 * 1024);
my $i = 0;
while ($redis->cli('EXISTS', '{mx:1}:rs_version') eq '1' && $i < 2000)
{
	$redis->cli('SET', "junk:$i", 'x' x 20000, 'EX', '10000000');
	$i++;
}
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
is($redis->cli('EXISTS', '{mx:1}:rs_version'), '0', "the tombstone was evicted (after $i junk keys)");
like($redis->cli('INFO', 'stats'), qr/evicted_keys:[1-9]/, 'Redis reports the eviction');

# the application increments the deleted row's counter (a write-behind
# insert); an older write-through write of the row is delivered late
$redis->cli('HINCRBY', 'mx:1', 'n', '5');
$node->safe_psql('postgres', q{
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
  VALUES ('mx'::regclass, 'mx:1', 'H', '{"v": "deleted value"}', '00000000000000000000000000000001');
SELECT redis_sync.deliver_outbox();
});
is($redis->cli('HGET', 'mx:1', 'n'), '5', 'the write-behind field stays');
is($redis->cli('HGET', 'mx:1', 'v'), '',
	'the older write does not bring the deleted row\'s write-through field back (a miss, never stale)');

done_testing();

# A cache fill (warm(), the background warm) never writes a value older
# than one Redis evicted.
#
# The fill takes no row locks and writes only keys that are missing with
# their version.  A row read by the fill's snapshot can be changed after it:
# the change is pushed (key + version), then Redis evicts both under
# maxmemory (allkeys-lru).  Without a check the fill would then write the
# old value with the lowest version, stale until the next write.  Once Redis
# has evicted keys (INFO evicted_keys is not 0) the fill settles such keys
# instead (fenced push, or the locked way under REPEATABLE READ): the key
# ends up with the row's current value, or missing, never the old value.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('fill_eviction', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE wm (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('wm', key_prefix => 'wm:', warm => false);
INSERT INTO wm VALUES (1, 'old'), (2, 'old');
});
# the cache starts empty
$redis->cli('DEL', 'wm:1', '{wm:1}:rs_version', 'wm:2', '{wm:2}:rs_version');
is($redis->cli('INFO', 'stats') =~ /evicted_keys:(\d+)/ ? $1 : 'none', '0',
	'Redis has evicted nothing yet');

# session a: the fill's snapshot, from before the change
my $a = RedisSync::Test::session($node);
$a->query('BEGIN ISOLATION LEVEL REPEATABLE READ');
is($a->query('SELECT v FROM wm WHERE id = 1')->{out}, 'old', 'snapshot taken');

# the change, pushed
$node->safe_psql('postgres', q{UPDATE wm SET v = 'new'});
is($redis->cli('HGET', 'wm:1', 'v'), 'new', 'the change is in Redis');

# Redis evicts the changed key with its version (as LRU may take any pair):
# the pair goes, and a real eviction moves evicted_keys
$redis->cli('DEL', 'wm:1', '{wm:1}:rs_version');
$redis->cli('EVAL',
	"for i = 1, 20000 do redis.call('SET', 'junk' .. i, string.rep('x', 1000)) end", '0');
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
$redis->cli('CONFIG', 'SET', 'maxmemory', '5mb');
$redis->cli('SET', "trigger$_", 'x') for 1 .. 3;
my ($evicted) = $redis->cli('INFO', 'stats') =~ /evicted_keys:(\d+)/;
ok($evicted > 0, "Redis evicted keys ($evicted)");
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
$redis->cli('EVAL', "for i = 1, 20000 do redis.call('DEL', 'junk' .. i) end", '0');
is($redis->cli('EXISTS', 'wm:1', '{wm:1}:rs_version'), '0', 'key 1 and its version are gone');

# the fill from the old snapshot: refused (a serialization failure) or
# settled; never the old value
my $r = $a->query(q{SELECT redis_sync.warm('wm')});
$a->query('ROLLBACK');
isnt($redis->cli('HGET', 'wm:1', 'v'), 'old',
	'a fill from before the eviction does not write the old value');
like($r->{err} . $r->{out}, qr/could not serialize|^\d+$/,
	'the fill under REPEATABLE READ is refused or settled');

# READ COMMITTED: keys missing with their version are settled with a real
# version (not the fill's lowest one).  The first push after Redis evicted
# records the eviction floor, and a settled push from before it leaves the
# key missing (a miss, never stale); a warm() after that fills it.
$redis->cli('DEL', 'wm:1', '{wm:1}:rs_version', 'wm:2', '{wm:2}:rs_version');
$node->safe_psql('postgres', q{SELECT redis_sync.warm('wm')});
for my $k (1, 2)
{
	my $v = $redis->cli('HGET', "wm:$k", 'v');
	ok($v eq '' || $v eq 'new', "first warm(): key $k missing or current ('$v')");
}
# versions are WAL positions: once the database has written past the
# floor (any write does), settled pushes are newer than it and fill
$node->safe_psql('postgres', q{CREATE TABLE wal_moves (i int)});
$node->safe_psql('postgres', q{SELECT redis_sync.warm('wm')});
is($redis->cli('HGET', 'wm:1', 'v'), 'new', 'warm() fills key 1 with the current value');
is($redis->cli('HGET', 'wm:2', 'v'), 'new', 'warm() fills key 2 with the current value');
isnt($redis->cli('GET', '{wm:1}:rs_version'), '0' x 24,
	'settled with a real version, not the fill version');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('wm')}), '0',
	'verify() clean');

# the background warm of a new table settles the same way
$node->safe_psql('postgres', q{
CREATE TABLE wb (id int PRIMARY KEY, v text);
INSERT INTO wb SELECT g, 'v' || g FROM generate_series(1, 100) g;
SELECT redis_sync.write_through('wb', key_prefix => 'wb:');
});
ok( $node->poll_query_until('postgres',
		q{SELECT state = 'done' FROM redis_sync.warming WHERE "table" = 'wb'::regclass}),
	'background warm done');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('wb')}), '0',
	'background warm under eviction: verify() clean');
is($redis->cli('HGET', 'wb:42', 'v'), 'v42', 'background warm filled the keys');

$node->stop;
done_testing();

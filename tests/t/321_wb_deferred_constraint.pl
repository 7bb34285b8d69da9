# A write-behind table with a deferred constraint (a DEFERRABLE INITIALLY
# DEFERRED foreign key): a member that violates it fails only at COMMIT,
# outside the drain's row-by-row retry.  README: "rows that fail for a
# permanent reason go to redis_sync.dead_letters, the rest commit".  The
# valid member of the same batch must be applied and the bad one must be a
# dead letter, not the whole batch retried forever.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbdeferred', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent VALUES (1);
CREATE TABLE d (id int PRIMARY KEY, p int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);
SELECT redis_sync.write_behind('d', key_prefix => 'd:', flush_interval => '1 h');
});

$redis->cli('HSET', 'd:1', 'p', '1');     # valid
$redis->cli('HSET', 'd:2', 'p', '99');    # violates the deferred foreign key
$redis->cli('SADD', 'd:dirty', 1, 2);
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'd', dirty => 'd:dirty', timeout => 20);
ok(defined $secs, 'the dirty set and processing set drain (nothing stuck)');
is(sq("SELECT string_agg(id || '=' || p, ',' ORDER BY id) FROM d"), '1=1', 'the valid member is applied');
is(sq("SELECT string_agg(member || ' ' || sqlstate, ',' ORDER BY member) FROM redis_sync.dead_letters"),
	'2 23503', 'the member violating the deferred constraint is a dead letter');
note(sq(q{SELECT string_agg(member || ': ' || error, ' / ') FROM redis_sync.dead_letters}));
note(sq(q{SELECT row_to_json(s) FROM redis_sync.stats s WHERE "table" = 'd'::regclass}));
is(RedisSync::WB::wb_stat($node, 'd', 'applied'), '1', 'stats: one row applied');

$node->stop;
done_testing();

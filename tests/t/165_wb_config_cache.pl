# The worker caches the list of write-behind tables between rounds
# (wb_config.c, wb_tables_cached) and must never drain with a stale one:
# the cache holds quoted names (schema.table, key type names), and a schema
# or type rename changes them without a relcache invalidation of the table.
# After each change below, a value written to Redis must reach the table
# (and nothing go to dead letters): with a stale cache the drain would name
# a schema or type that no longer exists and fail at every round.  A table
# made write-behind after the cache was loaded is drained too.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbcache', redis => $redis);

$node->safe_psql('postgres', q{
CREATE SCHEMA s1;
CREATE TYPE s1.color AS ENUM ('red', 'blue');
CREATE TABLE s1.t (id int PRIMARY KEY, v text);
CREATE TABLE s1.k (c s1.color PRIMARY KEY, v text);
SELECT redis_sync.write_behind('s1.t', key_prefix => 'ct:', dirty_set => 'ct:dirty', flush_interval => '50 ms');
SELECT redis_sync.write_behind('s1.k', key_prefix => 'ck:', dirty_set => 'ck:dirty', flush_interval => '50 ms');
});

# write a value for a member and wait (deadline, no sleep) until the row has it
sub drained
{
	my ($prefix, $member, $value, $query, $what) = @_;
	$redis->cli('HSET', "$prefix$member", 'v', $value);
	$redis->cli('SADD', "${prefix}dirty", $member);
	ok($node->poll_query_until('postgres', $query, $value), "$what: the value reached the table");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0',
		"$what: no dead letter");
}

drained('ct:', '1', 'a', q{SELECT v FROM s1.t WHERE id = 1}, 'before any change');
drained('ck:', 'red', 'a', q{SELECT v FROM s1.k WHERE c = 'red'}, 'enum key, before any change');

$node->safe_psql('postgres', 'ALTER SCHEMA s1 RENAME TO s2');
drained('ct:', '1', 'b', q{SELECT v FROM s2.t WHERE id = 1}, 'after ALTER SCHEMA RENAME');

$node->safe_psql('postgres', 'ALTER TYPE s2.color RENAME TO colour');
drained('ck:', 'blue', 'c', q{SELECT v FROM s2.k WHERE c = 'blue'}, 'after ALTER TYPE RENAME of the key type');

$node->safe_psql('postgres', 'ALTER TABLE s2.t RENAME TO t2');
drained('ct:', '2', 'd', q{SELECT v FROM s2.t2 WHERE id = 2}, 'after ALTER TABLE RENAME');

$node->safe_psql('postgres', q{
CREATE TABLE s2.n (id int PRIMARY KEY, v text);
SELECT redis_sync.write_behind('s2.n', key_prefix => 'cn:', dirty_set => 'cn:dirty', flush_interval => '50 ms');
});
drained('cn:', '1', 'e', q{SELECT v FROM s2.n WHERE id = 1}, 'a table made write-behind after the cache was loaded');

$node->stop;
$redis->stop;
done_testing();

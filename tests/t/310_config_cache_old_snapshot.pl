# Review 4: config.c caches, as valid for later transactions, a
# configuration read with a REPEATABLE READ transaction's snapshot, taken
# before the write_through() whose invalidation that transaction processed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('cfg_rr', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE u (id int PRIMARY KEY, v int NOT NULL);
SELECT redis_sync.write_through('u', key_prefix => 'p1:', warm => false);
});

# part 1: a registration committed after B's snapshot
my $b = RedisSync::Test::session($node);
$b->query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1');
$node->safe_psql('postgres', "SELECT redis_sync.write_through('t', key_prefix => 't:', warm => false)");
$b->query('INSERT INTO t VALUES (1, 1); COMMIT');
$b->query('INSERT INTO t VALUES (2, 2)');
$b->query('UPDATE t SET v = 3 WHERE id = 2');
is($redis->cli('EXISTS', 't:2'), '1', 'a later transaction of B pushes the row of the newly synced table');
my $other = RedisSync::Test::session($node);
$other->query('INSERT INTO t VALUES (3, 3)');
is($redis->cli('EXISTS', 't:3'), '1', 'another session pushes it');

# part 2: a new key prefix committed after B's snapshot
$b->query('INSERT INTO u VALUES (1, 1)');    # B has u's configuration cached
is($redis->cli('EXISTS', 'p1:1'), '1', 'u pushed under p1');
$b->query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1');
$node->safe_psql('postgres', "SELECT redis_sync.write_through('u', key_prefix => 'p2:', warm => false)");
$b->query('UPDATE u SET v = 2 WHERE id = 1; COMMIT');
$b->query('INSERT INTO u VALUES (5, 5)');
is($redis->cli('EXISTS', 'p2:5'), '1', 'a later transaction of B writes under the new prefix');
is($redis->cli('EXISTS', 'p1:5'), '0', 'and not under the old one');

$b->quit;
$other->quit;
$node->stop;
$redis->stop;
done_testing();

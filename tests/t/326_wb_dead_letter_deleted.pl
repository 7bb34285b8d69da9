# A dead-lettered member that the application then deletes (on_missing =>
# 'delete': DEL the key, SADD the member).  The drain deletes the row; the
# member's dead letter, whose value no longer exists, must leave
# redis_sync.dead_letters like one whose row is written (README: "a row
# leaves dead_letters once it is applied"), not stay there for good with an
# error about a value Redis no longer has.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbdldel', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE t (id int PRIMARY KEY, n int);
INSERT INTO t VALUES (1, 1), (2, 2);
SELECT redis_sync.write_behind('t', key_prefix => 't:', flush_interval => '1 h', on_missing => 'delete');
});
$redis->cli('HSET', 't:1', 'n', 'abc');
$redis->cli('SADD', 't:dirty', 1);
RedisSync::WB::flush_until_clean($node, $redis, table => 't', dirty => 't:dirty', timeout => 20);
is(sq("SELECT member FROM redis_sync.dead_letters"), '1', 'the bad value is a dead letter');

$redis->cli('DEL', 't:1');
$redis->cli('SADD', 't:dirty', 1);
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 't', dirty => 't:dirty', timeout => 20);
ok(defined $secs, 'drained');
is(sq("SELECT string_agg(id::text, ',') FROM t"), '2', 'the row is deleted');
is(sq("SELECT count(*) FROM redis_sync.dead_letters"), '0', 'its dead letter is gone');
is(RedisSync::WB::wb_stat($node, 't', 'applied'), '1', 'stats: the delete counted once');
$node->stop;
done_testing();

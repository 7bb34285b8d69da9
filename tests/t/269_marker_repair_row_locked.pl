# The worker's repair of an in-flight marker (the rows of a push whose
# transaction did not commit) reads those rows FOR SHARE, which waits for
# any transaction writing them.  A session left open after an UPDATE of one
# of those rows held the worker in that wait for as long as it stayed open:
# no async change of any other table was delivered and no write-behind
# table drained (README, Limitations, said so).  The repair now waits for a
# lock at most 200 ms and leaves the marker for the next sweep; once the
# session ends, the marker is repaired and removed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('marker_locked', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\n");

$node->safe_psql('postgres', q{
CREATE TABLE ti (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('ti', key_prefix => 'ti:');
INSERT INTO ti VALUES (1, 'committed'), (2, 'two');
}
	. RedisSync::OwnerCode::canary_sql());
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');
my $ti     = RedisSync::OwnerCode::table_oid($node, 'ti');
my $marker = RedisSync::OwnerCode::marker_key($node);

# a session updates row 1 and stays open (its push comes at its commit)
my $holder = RedisSync::Test::session($node);
$holder->query(q{BEGIN; UPDATE ti SET v = 'pending' WHERE id = 1});

# what a transaction that did not commit pushed, and its marker (an earlier
# server incarnation: did not commit, so the worker repairs its rows)
$redis->cli('HSET', 'ti:1', 'v', 'uncommitted');
$redis->cli('HSET', 'ti:2', 'v', 'uncommitted too');
RedisSync::OwnerCode::plant_marker($redis, $marker, '6:1:0:0', $ti, '1');
RedisSync::OwnerCode::plant_marker($redis, $marker, '7:1:0:0', $ti, '2');

ok(defined RedisSync::Compare::wait_for(
		sub { $node->log_contains('the repair of in-flight marker 6:1:0:0 waits for a transaction that holds a lock on its rows') },
		30),
	'the repair of the locked row gives up its wait, logged');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HEXISTS', $marker, '7:1:0:0') eq '0' }, 30),
	'the other marker of the sweep is repaired and removed');
is($redis->cli('HGET', 'ti:2', 'v'), 'two', 'its row holds the committed value');

# the worker is not held: another table's async change is delivered
RedisSync::OwnerCode::canary_set($node, 'after');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'after', 20),
	'an async change of another table is delivered while the row stays locked');
is($redis->cli('HEXISTS', $marker, '6:1:0:0'), '1', 'the locked row\'s marker stays for a later sweep');
# more deferrals than a marker has attempts before it is set aside (3)
ok(defined RedisSync::Compare::wait_for(
		sub {
			my @d = slurp_file($node->logfile) =~ /the repair of in-flight marker 6:1:0:0 waits/g;
			return @d >= 5;
		},
		60),
	'the repair is tried again at later sweeps');
cmp_ok($redis->cli('HGET', "$marker:attempts", '6:1:0:0') || 0, '<=', 1,
	'the deferred repairs are not counted as attempts (at most the one under way)');
is($redis->cli('HLEN', "$marker:failed"), '0', 'nothing set aside');

# the session rolls back: the next sweep repairs the row
$holder->query('ROLLBACK');
$holder->quit;
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 30),
	'once the lock is gone the marker is repaired and removed');
is($redis->cli('HGET', 'ti:1', 'v'), 'committed', 'the row holds its committed value again');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('ti')}), '0', 'cache == table');

done_testing();

# The worker repairs an in-flight marker (the rows of a push whose
# transaction did not commit) by reading those rows as the table's owner,
# under the owner's row security policies when the table forces them.  A
# policy whose function blocks held the worker in that repair for as long
# as it blocked: no async change of any other table was delivered and no
# write-behind table drained (the lock wait alone was bounded, TAP 269).
# The repair is now bounded by redis_sync.warm_timeout like the background
# warm's batches: a repair cancelled by it counts as one of the marker's
# three attempts, is not tried again before ten times the timeout, and the
# marker is set aside in <marker key>:failed after the third.  And a row
# the owner's policies hide from it: its key is deleted by the repair.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('marker_timeout', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\nredis_sync.warm_timeout = '500ms'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('gate', then => 'PERFORM pg_catalog.pg_sleep(3600);') . q{
CREATE TABLE ti (id int PRIMARY KEY, v text);
}
	. RedisSync::OwnerCode::forced_policy_sql('ti', 'gated', 'public.gate()') . q{
SELECT redis_sync.write_through('ti', key_prefix => 'ti:');
INSERT INTO ti VALUES (1, 'committed'), (2, 'two');
}
	. RedisSync::OwnerCode::canary_sql());
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');
my $ti     = RedisSync::OwnerCode::table_oid($node, 'ti');
my $marker = RedisSync::OwnerCode::marker_key($node);

sub timeouts
{
	my $field = shift;
	my @t = slurp_file($node->logfile) =~
	  /the repair of in-flight marker \Q$field\E took longer than redis_sync\.warm_timeout \(500 ms\) and was cancelled/g;
	return scalar @t;
}

# the policy blocks; what a transaction that did not commit pushed, and its
# marker (an earlier server incarnation: the worker repairs its row)
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
$redis->cli('HSET', 'ti:1', 'v', 'uncommitted');
RedisSync::OwnerCode::plant_marker($redis, $marker, '6:1:0:0', $ti, '1');

ok(defined RedisSync::Compare::wait_for(sub { timeouts('6:1:0:0') >= 1 }, 30),
	'the blocked repair is cancelled after warm_timeout, logged');
like(slurp_file($node->logfile), qr/HINT:  It is tried again in 5 s; after 3 attempts it is set aside in \Q$marker\E:failed/,
	'... with when it is tried again');

# the worker is not held: another table's async change is delivered
RedisSync::OwnerCode::canary_set($node, 'after');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'after', 4),
	'an async change of another table is delivered while the policy blocks');
is($redis->cli('HEXISTS', $marker, '6:1:0:0'), '1', 'the marker stays for a later sweep');
is($redis->cli('HGET', "$marker:attempts", '6:1:0:0'), '1', 'the cancelled repair counts as an attempt');
is(timeouts('6:1:0:0'), 1, 'and is not tried again at the next sweeps (held for ten times the timeout)');

# three cancelled repairs, then the marker is set aside for an operator
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HEXISTS', "$marker:failed", '6:1:0:0') eq '1' }, 60),
	'the marker is set aside after its attempts');
is(timeouts('6:1:0:0'), 3, '... three cancelled repairs');
is($redis->cli('HEXISTS', $marker, '6:1:0:0'), '0', '... and removed from the markers swept');
ok($node->log_contains('in-flight marker 6:1:0:0 set aside in ' . $marker . ':failed: 3 earlier repairs of it did not finish'),
	'the set-aside is logged');
is($redis->cli('HGET', 'ti:1', 'v'), 'uncommitted', 'its key keeps what was pushed until an operator acts');

# a repair cancelled once, then the policy stops blocking: repaired after the hold
$redis->cli('HSET', 'ti:2', 'v', 'uncommitted too');
RedisSync::OwnerCode::plant_marker($redis, $marker, '7:1:0:0', $ti, '2');
ok(defined RedisSync::Compare::wait_for(sub { timeouts('7:1:0:0') >= 1 }, 30),
	'a second marker\'s repair is cancelled too');
$node->safe_psql('postgres', 'UPDATE ctl SET block = false');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HEXISTS', $marker, '7:1:0:0') eq '0' }, 30),
	'once the policy lets it, the marker is repaired and removed');
is($redis->cli('HGET', 'ti:2', 'v'), 'two', 'its row holds the committed value');
is(timeouts('7:1:0:0'), 1, '... at the first try after the hold');
is($redis->cli('HEXISTS', "$marker:failed", '7:1:0:0'), '0', 'not set aside');

# the operator's repair of the set-aside one (resync() reads the rows as
# the owner too, so it refuses while row security applies to the owner)
$node->safe_psql('postgres', q{ALTER TABLE ti NO FORCE ROW LEVEL SECURITY; SELECT redis_sync.resync('ti')});
is($redis->cli('HGET', 'ti:1', 'v'), 'committed', 'resync() repairs the set-aside marker\'s key');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('ti')}), '0', 'cache == table');

# a row the owner's policies hide: the repair cannot read it, so its key
# is deleted (a miss), never left with what did not commit
$node->safe_psql('postgres', q{
CREATE TABLE hid (id int PRIMARY KEY, v text);
}
	. RedisSync::OwnerCode::forced_policy_sql('hid', 'not_two', 'id <> 2', 'true') . q{
SELECT redis_sync.write_through('hid', key_prefix => 'hid:');
INSERT INTO hid VALUES (1, 'one'), (2, 'two');
});
is($redis->cli('HGET', 'hid:2', 'v'), 'two', 'the hidden row was pushed at its commit');
my $hid = RedisSync::OwnerCode::table_oid($node, 'hid');
$redis->cli('HSET', 'hid:1', 'v', 'uncommitted');
$redis->cli('HSET', 'hid:2', 'v', 'uncommitted');
RedisSync::OwnerCode::plant_marker($redis, $marker, '8:1:0:0', $hid, '1', '2');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HEXISTS', $marker, '8:1:0:0') eq '0' }, 30),
	'a marker of a table whose policies hide a row from its owner is repaired');
is($redis->cli('HGET', 'hid:1', 'v'), 'one', 'the visible row holds its committed value');
is($redis->cli('EXISTS', 'hid:2'), '0', 'the hidden row\'s key is deleted, not left stale');

done_testing();

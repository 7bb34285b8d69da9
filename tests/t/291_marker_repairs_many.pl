# The worker's repair of one in-flight marker is bounded by
# redis_sync.warm_timeout and then held for ten times it (TAP 286), but the
# bound was per marker: a sweep that found many markers of a table whose
# code blocks (a crash with many of its transactions in flight) ran into
# the timeout once per marker, one after the other, and held the worker,
# with every other table's delivery and drain, for their sum (twelve
# markers of 0.5 s: 6 s).  A repair that runs into the timeout now holds
# its marker's tables too: their other markers wait without being tried,
# and the markers of other tables are repaired as before.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('marker_many', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\nredis_sync.warm_timeout = '500ms'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('gate', then => 'PERFORM pg_catalog.pg_sleep(3600);') . q{
CREATE TABLE ti (id int PRIMARY KEY, v text);
}
	. RedisSync::OwnerCode::forced_policy_sql('ti', 'gated', 'public.gate()') . q{
SELECT redis_sync.write_through('ti', key_prefix => 'ti:');
INSERT INTO ti SELECT g, 'committed' FROM generate_series(1, 12) g;
}
	. RedisSync::OwnerCode::canary_sql());
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');
my $ti     = RedisSync::OwnerCode::table_oid($node, 'ti');
my $marker = RedisSync::OwnerCode::marker_key($node);

sub timeouts
{
	my @t = slurp_file($node->logfile) =~
	  /the repair of in-flight marker \S+ took longer than redis_sync\.warm_timeout/g;
	return scalar @t;
}

# twelve markers of the blocked table (an earlier server incarnation: each
# is repaired), twelve timeouts of 0.5 s in one sweep
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
$redis->cli('HSET', $marker, map { (100 + $_) . ':1:0:0', RedisSync::OwnerCode::marker_json($ti, $_) } 1 .. 12);
ok(defined RedisSync::Compare::wait_for(sub { timeouts() >= 1 }, 30), 'a repair runs into warm_timeout');

RedisSync::OwnerCode::canary_set($node, 'after');
my $t0 = time;
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'after', 2),
	'an async change of another table is delivered within 2 s');
cmp_ok(timeouts(), '<=', 2, 'one sweep runs into the timeout once or twice, not once per marker');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'after', 30),
	'the async change is delivered once the sweep ends');
note(sprintf('delivered after %.1f s, %d timeouts', time - $t0, timeouts()));
is($redis->cli('HLEN', $marker), '12', 'the blocked table\'s markers stay for later sweeps');

# a marker of another table in the same sweep is repaired meanwhile
$redis->cli('HSET', 'q:1', 'v', 'uncommitted');
my $q = RedisSync::OwnerCode::table_oid($node, 'q');
RedisSync::OwnerCode::plant_marker($redis, $marker, '200:1:0:0', $q, '1');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HEXISTS', $marker, '200:1:0:0') eq '0' }, 10),
	'a marker of another table is repaired while the blocked table is held');
is($redis->cli('HGET', 'q:1', 'v'), 'after', '... its key holds the committed value');

# the policy lets them: every marker repaired once the hold runs out
$node->safe_psql('postgres', 'UPDATE ctl SET block = false');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 30),
	'the blocked table\'s markers are repaired after the hold');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('ti')}), '0', 'cache == table');

done_testing();

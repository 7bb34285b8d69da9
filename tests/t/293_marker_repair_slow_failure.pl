# The worker's repair of an in-flight marker whose table's code runs into
# redis_sync.warm_timeout is held for ten times the timeout (TAP 286).  One
# that failed otherwise after running long was tried again at the next
# sweep: a policy of a FORCE ROW LEVEL SECURITY table owned by a plain role
# that sleeps a little less than the timeout and then raises a lock not
# available (the repair is deferred, not counted) or a serialization
# failure (the round is retried) held the worker, and with it every other
# table's delivery and drain, at every sweep.  Such a repair now waits ten
# times what it ran.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('marker_slow_failure', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\nredis_sync.warm_timeout = '1s'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('gate', column => 'code', type => 'text', initial => 'NULL',
		declare => 'c text := (SELECT code FROM public.ctl)', cond => 'c IS NOT NULL',
		then => q{RAISE LOG 'gate raises %', c; PERFORM pg_catalog.pg_sleep(0.6);
		          RAISE EXCEPTION 'gate gives up' USING ERRCODE = c;}) . q{
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

sub raises
{
	my $code = shift;
	my @r = slurp_file($node->logfile) =~ /LOG:  gate raises \Q$code\E/g;
	return scalar @r;
}

for my $case (['55P03', '6:1:0:0', 1], ['40001', '7:1:0:0', 2])
{
	my ($code, $field, $id) = @$case;

	$node->safe_psql('postgres', "UPDATE ctl SET code = '$code'");
	$redis->cli('HSET', "ti:$id", 'v', 'uncommitted');
	RedisSync::OwnerCode::plant_marker($redis, $marker, $field, $ti, $id);
	ok(defined RedisSync::Compare::wait_for(sub { raises($code) >= 1 }, 30), "$code: the repair runs");
	my $first = raises($code);
	sleep 4;
	my $more = raises($code) - $first;
	cmp_ok($more, '<=', 1, "$code: at most one more repair in the next 4 s ($more)");
	is($redis->cli('HEXISTS', $marker, $field), '1', "$code: the marker stays");
	is($redis->cli('HEXISTS', "$marker:failed", $field), '0', "$code: not set aside");

	# the policy lets it: repaired after the hold
	$node->safe_psql('postgres', 'UPDATE ctl SET code = NULL');
	ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HEXISTS', $marker, $field) eq '0' }, 30),
		"$code: repaired and removed once the policy lets it");
	is($redis->cli('HGET', "ti:$id", 'v'), $id == 1 ? 'committed' : 'two', "$code: the key holds the row");
}

done_testing();

# A table's code that runs a little less than redis_sync.warm_timeout and
# then fails (a policy that sleeps, then raises a serialization failure)
# escapes the timeout's "wait ten times the timeout" rule.  The background
# warm retried such a table after its usual backoff (1 s, doubling), and the
# work after a Redis restart after its own (1 s, doubling): the worker was
# held most of the time.  Both now wait at least ten times what the failed
# step ran, as the drain and the marker repair do (TAP 292, 293).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('warm_slow_failure', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '2s'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('slow_fail', column => 'fail',
		then => q{PERFORM pg_catalog.pg_sleep(1);
		          RAISE EXCEPTION 'slow failure' USING ERRCODE = 'serialization_failure';}) . q{
CREATE TABLE wt (id int PRIMARY KEY, v text);
INSERT INTO wt SELECT g, 'v' || g FROM generate_series(1, 10) g;
}
	. RedisSync::OwnerCode::forced_policy_sql('wt', 'p', 'public.slow_fail()') . q{
CREATE TABLE wb (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO wb VALUES (1, 7);
}
	. RedisSync::OwnerCode::forced_policy_sql('wb', 'p', 'public.slow_fail()') . q{
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', dirty_set => 'wb-dirty',
                               counters => '{n}', flush_interval => '1 h');
UPDATE ctl SET fail = true;
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

# the background warm of wt fails after 1 s: its retry waits 10 s, not 1 s
$node->safe_psql('postgres', q{SELECT redis_sync.write_through('wt', key_prefix => 'wt:')});
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', q{SELECT attempts FROM redis_sync._warm_queue WHERE relid = 'wt'::regclass}) eq '1' }, 30),
	'the background warm fails once');
my $wait = $node->safe_psql('postgres',
	q{SELECT extract(epoch FROM retry_at - last_error_at) FROM redis_sync._warm_queue WHERE relid = 'wt'::regclass});
cmp_ok($wait, '>=', 9, "its retry waits ten times what it ran ($wait s)");

# the failed warm held alice's code (every table of hers) for as long: let
# the warm finish (it runs once the hold ends), then make the policy fail
# again for the work after a restart
$node->safe_psql('postgres', 'UPDATE ctl SET fail = false');
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', q{SELECT state FROM redis_sync.warming WHERE "table" = 'wt'::regclass}) eq 'done' }, 60),
	'the warm is done at its retry');
$node->safe_psql('postgres', 'UPDATE ctl SET fail = true');

# the work after a Redis restart: the re-seed of wb fails after 1 s
$redis->stop;
$redis->start;
ok(defined RedisSync::Compare::wait_for(
		sub { $node->log_contains(qr/re-seeding the write-behind keys of table \d+ after the Redis restart failed: slow failure/) }, 30),
	'the re-seed fails after running 1 s');
ok(defined RedisSync::Compare::wait_for(
		sub { $node->log_contains(qr/the work after the Redis restart failed, retrying in \d+ ms/) }, 30),
	'the work after the restart is retried later');
my ($ms) = slurp_file($node->logfile) =~ /the work after the Redis restart failed, retrying in (\d+) ms/;
cmp_ok($ms, '>=', 9000, "... ten times what the failed table's step ran ($ms ms)");

# the policy lets them: both done
$node->safe_psql('postgres', 'UPDATE ctl SET fail = false');
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'wb:1', 'n') // '') eq '7' }, 60),
	'the re-seed is done at its retry');
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'wt:10', 'v') // '') eq 'v10' }, 60),
	'the table is warm again');

done_testing();

# After Redis restarts empty the worker seeds every write-behind key again
# from its table (wb_counters.c), reading the table as its owner, under the
# owner's row security policies when the table forces them.  The re-seed of
# every table ran in one transaction with no time limit: a policy whose
# function blocked held the worker for as long as it blocked (no async
# change of any other table delivered, no drain), and a table whose re-seed
# failed failed the others' with it.  Each table's re-seed now runs in its
# own transaction, bounded by redis_sync.warm_timeout; one that fails or
# runs into it is logged and retried alone, after ten times the timeout.
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
my $node  = RedisSync::Test::new_node('reseed_timeout', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '500ms'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('gate', then => 'PERFORM pg_catalog.pg_sleep(3600);') . q{
CREATE TABLE gated (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO gated VALUES (1, 7);
}
	. RedisSync::OwnerCode::forced_policy_sql('gated', 'p', 'public.gate()') . q{
SELECT redis_sync.write_behind('gated', key_prefix => 'gated:', dirty_set => 'gated-dirty',
                               counters => '{n}', flush_interval => '100 ms');
CREATE TABLE plain (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO plain VALUES (1, 42);
SELECT redis_sync.write_behind('plain', key_prefix => 'plain:', dirty_set => 'plain-dirty',
                               counters => '{n}', flush_interval => '100 ms');
}
	. RedisSync::OwnerCode::canary_sql());
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');
my $gated = RedisSync::OwnerCode::table_oid($node, 'gated');

sub log_count
{
	my $re = shift;
	my @m = slurp_file($node->logfile) =~ /$re/g;
	return scalar @m;
}
my $timeout_re = qr/re-seeding the write-behind keys of table $gated after the Redis restart failed: it took longer than redis_sync\.warm_timeout \(500 ms\) and was cancelled/;

# the policy blocks; Redis restarts empty
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
$redis->stop;
$redis->start;

ok(defined RedisSync::Compare::wait_for(sub { log_count($timeout_re) >= 1 }, 60),
	'the blocked table\'s re-seed is cancelled after warm_timeout, logged');
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'plain:1', 'n') // '') eq '42' }, 20),
	'the other write-behind table is re-seeded');
RedisSync::OwnerCode::canary_set($node, 'after');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'after', 4),
	'an async change of another table is delivered while the policy blocks');
is($redis->cli('EXISTS', 'gated:1'), '0', 'the blocked table\'s key is not seeded yet');

# an application increments the other table's seeded counter: drained on top of it
$redis->cli('HINCRBY', 'plain:1', 'n', 1);
$redis->cli('SADD', 'plain-dirty', '1');
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM plain') eq '43' }, 20),
	'the other table drains');

# the policy lets it: re-seeded at the retry, the other table not again
$node->safe_psql('postgres', 'UPDATE ctl SET block = false');
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'gated:1', 'n') // '') eq '7' }, 60),
	'the blocked table is re-seeded once its policy lets it');
ok($node->log_contains('re-seeded 1 write-behind keys of public.gated'), '... logged');
is(log_count(qr/re-seeded 1 write-behind keys of public\.plain/), 1, 'the other table was re-seeded once');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HINCRBY', 'gated:1', 'n', 0) eq '7' }, 5),
	'the counter holds the table\'s value');

done_testing();

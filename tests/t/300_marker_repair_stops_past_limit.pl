# The repair of one in-flight marker covers every table the marker names,
# under one warm_timeout.  When the code of its first table's owner caught
# the cancel and returned, the repair went on with the next table, whose
# owner's code was then running at the second stage (TAP 295): the worker
# ended itself and held that owner, who had done nothing wrong.  Now the
# repair stops before its next table once past the limit, and counts as
# timed out (held, retried later, TAP 286).
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
my $node  = RedisSync::Test::new_node('marker_stops', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\nredis_sync.warm_timeout = '1s'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('gate', then => q{BEGIN
      PERFORM pg_catalog.pg_sleep(3600);
    EXCEPTION WHEN query_canceled THEN
      PERFORM pg_catalog.pg_sleep(0.3);    -- and return, past the limit
    END;}) . q{
CREATE TABLE ta (id int PRIMARY KEY, v text);
}
	. RedisSync::OwnerCode::forced_policy_sql('ta', 'gated', 'public.gate()') . q{
CREATE ROLE bob;
GRANT SELECT ON public.ctl TO bob;
CREATE FUNCTION public.slow_b() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT block FROM public.ctl) THEN
    PERFORM pg_catalog.pg_sleep(5);    -- slow, no catch
  END IF;
  RETURN true;
END $$;
ALTER FUNCTION public.slow_b() OWNER TO bob;
CREATE TABLE tb (id int PRIMARY KEY, v text);
ALTER TABLE tb OWNER TO bob;
ALTER TABLE tb ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb FORCE ROW LEVEL SECURITY;
CREATE POLICY slow ON tb USING (public.slow_b());
SELECT redis_sync.write_through('ta', key_prefix => 'ta:');
SELECT redis_sync.write_through('tb', key_prefix => 'tb:');
INSERT INTO ta VALUES (1, 'committed');
INSERT INTO tb VALUES (1, 'committed');
}
	. RedisSync::OwnerCode::canary_sql());
my $first = RedisSync::WB::wait_worker($node, timeout => 30);
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');
my $ta     = RedisSync::OwnerCode::table_oid($node, 'ta');
my $tb     = RedisSync::OwnerCode::table_oid($node, 'tb');
my $marker = RedisSync::OwnerCode::marker_key($node);

# one marker of both tables (an earlier server incarnation: repaired), ta first
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
$redis->cli('HSET', 'ta:1', 'v', 'uncommitted');
$redis->cli('HSET', 'tb:1', 'v', 'uncommitted');
$redis->cli('HSET', $marker, '100:1:0:0', qq{[[$ta,"1"],[$tb,"1"]]});

my $timeout_re = qr/the repair of in-flight marker \S+ took longer than redis_sync\.warm_timeout/;
my $overrun_re = qr/went on past twice its step's time limit/;
ok(defined RedisSync::Compare::wait_for(
		sub { $node->log_contains($timeout_re) || $node->log_contains($overrun_re) }, 30),
	'the repair ends');
ok($node->log_contains($timeout_re), '... as timed out, before the next table');
ok(!$node->log_contains($overrun_re), 'the worker does not end itself');
ok(!$node->log_contains('runs no code of role "bob"'), 'bob, whose code was not the one that caught the cancel, is not held');
is(RedisSync::WB::wait_worker($node, timeout => 5), $first, 'the same worker runs');
is($redis->cli('HGET', 'tb:1', 'v'), 'uncommitted', 'tb\'s key waits for the next repair');

# the policies let them: the marker is repaired
$node->safe_psql('postgres', 'UPDATE ctl SET block = false');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 30),
	'the marker is repaired after the hold');
is($redis->cli('HGET', 'ta:1', 'v'), 'committed', 'ta\'s key holds the committed value');
is($redis->cli('HGET', 'tb:1', 'v'), 'committed', 'tb\'s key holds the committed value');

done_testing();

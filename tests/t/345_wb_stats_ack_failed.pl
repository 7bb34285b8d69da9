# A write-behind batch that committed but whose acknowledgement failed
# (Redis paused past command_timeout right after the commit) is applied
# again from the processing set by the next round's recovery.  The
# statistics count it once: claimed, applied and batches of
# redis_sync.stats are those of one drain of the keys (README
# "Statistics").  Before, the recovery counted the batch a second time.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $KEYS  = 5;
my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbackfail', redis => $redis,
	extra_conf => "redis_sync.command_timeout = '300ms'\nredis_sync.retry_max_backoff = '500ms'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE wb (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
CREATE FUNCTION wb_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_advisory_lock_shared(4242);
  PERFORM pg_catalog.pg_advisory_unlock_shared(4242);
  RETURN NEW;
END $$;
CREATE TRIGGER wb_gate BEFORE INSERT OR UPDATE ON wb FOR EACH ROW EXECUTE FUNCTION wb_gate();
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', flush_interval => '100 ms');
});
my $proc = RedisSync::WB::processing_set('wb:dirty');
my $pid  = RedisSync::WB::wait_worker($node, timeout => 60);
ok(defined $pid, 'a worker runs');

my $gate = RedisSync::Test::session($node);
$gate->query('SELECT pg_advisory_lock(4242)');
$redis->cli('HSET', "wb:$_", 'n', 1) for 1 .. $KEYS;
$redis->cli('SADD', 'wb:dirty', 1 .. $KEYS);
ok(defined RedisSync::Compare::wait_for(sub {
	sq("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND wait_event_type = 'Lock'") eq '1' }, 60),
	'the worker waits in the batch, before its commit');
is(RedisSync::WB::scard($redis, $proc), $KEYS, 'the batch is in the processing set');

# Redis pauses every client: the batch commits, its SREM times out
$redis->pause_ms(3000);
$gate->query('SELECT pg_advisory_unlock(4242)');
ok(defined RedisSync::Compare::wait_for(sub { sq('SELECT count(*) FROM wb WHERE n = 1') eq "$KEYS" }, 20),
	'the batch committed');
ok(defined RedisSync::Compare::wait_for(sub {
	sq(q{SELECT coalesce(last_error, '') FROM redis_sync.stats WHERE "table" = 'wb'::regclass}) ne '' }, 20),
	'its acknowledgement failed');
$gate->quit;

my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'wb', dirty => 'wb:dirty', timeout => 60);
ok(defined $secs, 'the processing set is recovered and drained');
is(sq('SELECT count(*) FROM wb WHERE n = 1'), "$KEYS", 'every row has its value');
is(RedisSync::WB::wb_stat($node, 'wb', 'claimed'), "$KEYS", 'claimed counts each key once');
is(RedisSync::WB::wb_stat($node, 'wb', 'applied'), "$KEYS", 'applied counts each row once');
is(RedisSync::WB::wb_stat($node, 'wb', 'batches'), '1', 'batches counts the batch once');

# a second change of the same keys is a new drain, counted again
$redis->cli('HSET', "wb:$_", 'n', 2) for 1 .. $KEYS;
$redis->cli('SADD', 'wb:dirty', 1 .. $KEYS);
($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'wb', dirty => 'wb:dirty', timeout => 60);
ok(defined $secs, 'a second change drained');
is(sq('SELECT count(*) FROM wb WHERE n = 2'), "$KEYS", 'every row has its new value');
is(RedisSync::WB::wb_stat($node, 'wb', 'applied'), 2 * $KEYS, 'applied counts the new drain');
is(RedisSync::WB::wb_stat($node, 'wb', 'batches'), '2', 'batches counts the new batch');
done_testing();

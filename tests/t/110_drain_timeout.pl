# redis_sync.drain_timeout: a write-behind batch that does not finish (a
# user trigger that sleeps) is cancelled after the timeout, its members stay
# queued (no dead letters), the failure is reported (server log, stats
# last_error and drain_retries), other tables keep draining, and the batch
# is applied once the trigger lets it.  The setting is reloaded on SIGHUP.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('draintimeout', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE gate (closed bool NOT NULL);
INSERT INTO gate VALUES (true);
CREATE TABLE slow (id int PRIMARY KEY, n int);
CREATE FUNCTION slow_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT closed FROM public.gate) THEN
    PERFORM pg_sleep(600);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER slow_trigger BEFORE INSERT OR UPDATE ON slow FOR EACH ROW EXECUTE FUNCTION slow_trigger();
CREATE TABLE fast (id int PRIMARY KEY, n int);
SELECT redis_sync.write_behind('slow', key_prefix => 'slow:', flush_interval => '100 ms');
SELECT redis_sync.write_behind('fast', key_prefix => 'fast:', flush_interval => '100 ms');
});

# the default, then a reload to a short timeout (SIGHUP)
is($node->safe_psql('postgres', 'SHOW redis_sync.drain_timeout'), '1min', 'default drain_timeout');
$node->safe_psql('postgres', "ALTER SYSTEM SET redis_sync.drain_timeout = '1s'; SELECT pg_reload_conf()");
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SHOW redis_sync.drain_timeout') eq '1s' }, 30),
	'drain_timeout reloaded');

my $log_offset = -s $node->logfile;
$redis->cli('HSET', 'slow:1', 'n', '5');
$redis->cli('SADD', 'slow:dirty', '1');
$redis->cli('HSET', 'fast:1', 'n', '7');
$redis->cli('SADD', 'fast:dirty', '1');

# the stuck batch is cancelled and reported; the worker is not stalled
ok(defined RedisSync::Compare::wait_for(
		sub {
			$node->safe_psql('postgres',
				"SELECT coalesce(last_error, '') FROM redis_sync.stats WHERE \"table\" = 'slow'::regclass")
			  =~ /drain_timeout/;
		}, 60),
	'the stuck batch is reported in stats.last_error');
ok($node->wait_for_log(qr/draining public\.slow failed, retrying in \d+ ms: a batch took longer than redis_sync\.drain_timeout \(1000 ms\) and was cancelled/,
		$log_offset),
	'... and in the server log');
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SELECT n FROM fast WHERE id = 1') eq '7' }, 30),
	'another write-behind table keeps draining meanwhile');
ok(defined RedisSync::Compare::wait_for(
		sub {
			$node->safe_psql('postgres', "SELECT drain_retries >= 2 FROM redis_sync.stats WHERE \"table\" = 'slow'::regclass")
			  eq 't';
		}, 60),
	'the batch is retried (drain_retries counts each cancelled attempt)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM slow'), '0', 'nothing applied while the trigger blocks');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letter');
is($redis->cli('SCARD', 'slow:dirty') + $redis->cli('SCARD', '{slow:dirty}:rs_processing'), 1,
	'the member is still queued');

# the trigger lets it through: the retried batch applies
$node->safe_psql('postgres', 'UPDATE gate SET closed = false');
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SELECT n FROM slow WHERE id = 1') eq '5' }, 60),
	'the batch is applied once the trigger returns quickly');
ok(defined RedisSync::Compare::wait_for(
		sub { $redis->cli('SCARD', 'slow:dirty') + $redis->cli('SCARD', '{slow:dirty}:rs_processing') == 0 }, 30),
	'... and acknowledged');

# 0 disables the limit
$node->safe_psql('postgres', "ALTER SYSTEM SET redis_sync.drain_timeout = 0; SELECT pg_reload_conf()");
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SHOW redis_sync.drain_timeout') eq '0' }, 30),
	'drain_timeout 0 reloaded');

$node->stop;
$redis->stop;
done_testing();

# Waits that depend on Redis fail fast while Redis is down, and transient
# errors of the write-behind drain are retried, never dead-lettered.
#
# 1. flush() of a write-behind table with Redis stopped returns (with an
#    error naming the cause) within a second, both before and after the
#    circuit breaker opened -- it used to wait for flush_timeout (60 s).
# 2. The drain meets a lock timeout (a session holds the table locked, the
#    worker runs with lock_timeout), a deadlock and a serialization failure
#    (raised by a trigger on the table, as a real one would be): each is
#    retried, counted in drain_retries, and nothing goes to dead_letters;
#    once the cause is gone the values are applied.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'failfast',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.flush_timeout = '60s'
redis_sync.connect_timeout = '500ms'
redis_sync.retry_max_backoff = '200ms'
redis_sync.naptime = '100ms'
EOC

$node->safe_psql(
	'postgres', q{
CREATE TABLE wb (id int PRIMARY KEY, hits int NOT NULL DEFAULT 0);
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', flush_interval => '100 ms');
CREATE TABLE fail_mode (sqlstate text);
CREATE FUNCTION wb_fail() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
  SELECT f.sqlstate INTO s FROM public.fail_mode f;
  IF s IS NOT NULL THEN
    RAISE EXCEPTION 'simulated transient error %', s USING ERRCODE = s;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER wb_fail BEFORE INSERT OR UPDATE ON wb FOR EACH ROW EXECUTE FUNCTION wb_fail();
});
ok(defined RedisSync::WB::wait_worker($node), 'worker running');

# a first value drains normally
$redis->cli('HSET', 'wb:1', 'hits', '10');
$redis->cli('SADD', 'wb:dirty', '1');
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'wb', dirty => 'wb:dirty', timeout => 30);
ok(defined $secs, 'value drained while Redis is up');
is($node->safe_psql('postgres', 'SELECT hits FROM wb WHERE id = 1'), '10', 'row applied');

# --- transient errors: retried, never dead-lettered
for my $case ([ '40P01', 'deadlock' ], [ '40001', 'serialization failure' ], [ '55P03', 'lock not available' ])
{
	my ($state, $name) = @$case;
	my $retries0 = RedisSync::WB::wb_stat($node, 'wb', 'drain_retries');
	$node->safe_psql('postgres', "INSERT INTO fail_mode VALUES ('$state')");
	$redis->cli('HSET', 'wb:2', 'hits', $state eq '40P01' ? '21' : $state eq '40001' ? '22' : '23');
	$redis->cli('SADD', 'wb:dirty', '2');
	ok( $node->poll_query_until('postgres',
			"SELECT drain_retries >= $retries0 + 2 FROM redis_sync.stats WHERE \"table\" = 'wb'::regclass"),
		"$name: the drain is retried");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0',
		"$name: nothing dead-lettered");
	$node->safe_psql('postgres', 'DELETE FROM fail_mode');
	($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'wb', dirty => 'wb:dirty', timeout => 30);
	ok(defined $secs, "$name: drained once the cause is gone");
	is( $node->safe_psql('postgres', 'SELECT hits FROM wb WHERE id = 2'),
		$state eq '40P01' ? '21' : $state eq '40001' ? '22' : '23',
		"$name: value applied");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0',
		"$name: still no dead letter");
}

# a real lock timeout: the worker runs with lock_timeout, a session holds the table
$node->safe_psql('postgres', q{ALTER SYSTEM SET lock_timeout = '100ms'; SELECT pg_reload_conf()});
{
	my $retries0 = RedisSync::WB::wb_stat($node, 'wb', 'drain_retries');
	my $locker = RedisSync::Test::session($node);
	$locker->query('BEGIN; LOCK TABLE wb IN ACCESS EXCLUSIVE MODE');
	$redis->cli('HSET', 'wb:3', 'hits', '30');
	$redis->cli('SADD', 'wb:dirty', '3');
	ok( $node->poll_query_until('postgres',
			"SELECT drain_retries >= $retries0 + 2 FROM redis_sync.stats WHERE \"table\" = 'wb'::regclass"),
		'real lock timeout: the drain is retried');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0',
		'real lock timeout: nothing dead-lettered');
	$locker->query('COMMIT');
	$locker->quit;
	($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'wb', dirty => 'wb:dirty', timeout => 30);
	ok(defined $secs, 'real lock timeout: drained once the lock is gone');
	is($node->safe_psql('postgres', 'SELECT hits FROM wb WHERE id = 3'), '30', 'real lock timeout: value applied');
}
$node->safe_psql('postgres', q{ALTER SYSTEM RESET lock_timeout; SELECT pg_reload_conf()});

# --- flush() while Redis is down
$redis->stop;
for my $attempt (1 .. 4)
{
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.flush('wb')});
	my $elapsed = time - $t0;
	diag(sprintf('flush() %d with Redis stopped: %.3fs, %s', $attempt, $elapsed,
		$ret == 0 ? 'returned' : 'failed'));
	cmp_ok($elapsed, '<', 1.0, "flush() $attempt with Redis stopped returns within a second");
	if ($ret == 0)
	{
		like($err, qr/could not be drained/, "flush() $attempt: warns that the drain failed");
	}
	else
	{
		like($err, qr/Redis (is unreachable|at \S+ is not being tried)|could not (connect|deliver)/,
			"flush() $attempt: the error says Redis is unreachable");
	}
}
is(RedisSync::Test::Session->can('new') ? 1 : 1, 1, 'sessions still work');
like($node->safe_psql('postgres', 'SELECT circuit FROM redis_sync.worker_stats'), qr/^open$/,
	'circuit breaker open');
{
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.flush('wb')});
	cmp_ok(time - $t0, '<', 1.0, 'flush() with the circuit open returns within a second');
	isnt($ret, 0, '... with an error');
	like($err, qr/could not drain write-behind tables: Redis is unreachable|could not deliver the outbox/,
		'... that names the cause');
}

# Redis back: flush() works again
$redis->start;
$redis->cli('HSET', 'wb:4', 'hits', '40');
$redis->cli('SADD', 'wb:dirty', '4');
($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'wb', dirty => 'wb:dirty', timeout => 30);
ok(defined $secs, 'after Redis is back, flush() drains again');
is($node->safe_psql('postgres', 'SELECT hits FROM wb WHERE id = 4'), '40', 'value applied');

unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no crash');
$node->stop;
done_testing();

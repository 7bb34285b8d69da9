# The second stage of a step's time limit (TAP 295) only sees code still
# running at twice the limit.  A trigger that caught drain_timeout's cancel
# and returned before that had its batch committed as a success: no
# rollback, no ten-times backoff, no hold, and the table drained again at
# the next round, so an owner of a few such tables kept the worker (every
# other table's delivery and drain) busy nearly all the time, and delayed
# a server's shutdown past shutdown_drain_timeout.  Now a step that ran
# past its limit fails before it commits (rs_step_timeout_check), whatever
# its code did with the cancel.
#
# And a role that owns no table at all: PUBLIC had DELETE on
# redis_sync.dead_letters, which let it LOCK the table in ACCESS EXCLUSIVE
# mode, and every drain batch reads it: every write-behind table of the
# database waited.  PUBLIC has SELECT only now; discard_dead_letters()
# deletes as the superuser after its own owner check.
# (From an adversarial review of 2e2a41a.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time sleep);

my @T = qw(m1 m2 m3);
my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('caught_returns', redis => $redis,
	extra_conf => "redis_sync.drain_timeout = '1s'\nredis_sync.shutdown_drain_timeout = '500ms'\n");

my $sql = q{
CREATE ROLE mallory;
CREATE TABLE mctl (mode text NOT NULL);
INSERT INTO mctl VALUES ('off');
ALTER TABLE mctl OWNER TO mallory;
CREATE TABLE mcount (n int NOT NULL);
INSERT INTO mcount VALUES (0);
ALTER TABLE mcount OWNER TO mallory;
CREATE FUNCTION public.m_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT mode FROM public.mctl) = 'on' THEN
    BEGIN
      PERFORM pg_catalog.pg_sleep(3600);
    EXCEPTION WHEN query_canceled THEN
      NULL;
    END;
    PERFORM pg_catalog.pg_sleep(0.7);   -- returns at ~1.7 s, before the 2 s stage
    RAISE LOG 'm_slow returns after the cancel';
  END IF;
  RETURN NEW;
END $$;
ALTER FUNCTION public.m_slow() OWNER TO mallory;
};
for my $t (@T)
{
	$sql .= qq{
CREATE TABLE $t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO $t VALUES (1, 0);
ALTER TABLE $t OWNER TO mallory;
CREATE TRIGGER m_slow BEFORE INSERT OR UPDATE ON $t FOR EACH ROW EXECUTE FUNCTION public.m_slow();
SELECT redis_sync.write_behind('$t', key_prefix => '$t:', dirty_set => '$t-dirty', flush_interval => '100 ms');
};
}
$sql .= q{
CREATE ROLE eve;
CREATE TABLE s1 (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO s1 VALUES (1, 0);
SELECT redis_sync.write_behind('s1', key_prefix => 's1:', dirty_set => 's1-dirty', flush_interval => '100 ms');
};
$node->safe_psql('postgres', $sql . RedisSync::OwnerCode::canary_sql());
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');

sub dirty_all
{
	my ($v) = @_;
	for my $t (@T)
	{
		$redis->cli('HSET', "$t:1", 'n', $v);
		$redis->cli('SADD', "$t-dirty", '1');
	}
}

sub canary_latency
{
	my ($v) = @_;
	my $t0 = time;
	RedisSync::OwnerCode::canary_set($node, $v);
	while (time - $t0 < 60)
	{
		return time - $t0 if ($redis->cli('HGET', 'q:1', 'v') // '') eq $v;
		sleep 0.01;
	}
	return undef;
}

my $base = canary_latency('base');
note(sprintf('canary latency before: %.3f s', $base));

$node->safe_psql('postgres', q{UPDATE mctl SET mode = 'on'});
my $start = time;
my @lat;
my $i = 0;
while (time - $start < 30)
{
	$i++;
	dirty_all($i);
	sleep 0.2;
	push @lat, canary_latency("v$i");
}
my $elapsed = time - $start;
my $count   = () = slurp_file($node->logfile) =~ /m_slow returns after the cancel/g;
my ($max, $sum) = (0, 0);
for (@lat) { $max = $_ if $_ > $max; $sum += $_; }
my $busy = $count * 1.7 / $elapsed;
note(sprintf('%d batches of mallory ran in %.1f s: worker busy in her triggers %.0f%% of the time; '
		. 'canary latency avg %.2f s, max %.2f s over %d changes', $count, $elapsed, 100 * $busy,
		$sum / @lat, $max, scalar @lat));
my $fails   = () = slurp_file($node->logfile) =~ /draining public\.m\d failed/g;
my $overrun = $node->log_contains('went on past twice');
diag("failed drains logged: $fails; overrun stage fired: " . ($overrun ? 'yes' : 'no'));
ok($fails > 0 || $overrun, 'a batch that ran into drain_timeout is rolled back / backs off, or its owner is held');
ok($busy < 0.5, 'the owner\'s code does not keep the worker busy most of the time');
ok($max < 3, 'another table\'s async change waits less than 3 s');

# E. eve, a role with no table at all, tries to lock redis_sync.dead_letters,
# which every drain batch reads (drain.c forget_dead_letters)
$node->safe_psql('postgres', q{UPDATE mctl SET mode = 'off'});
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT count(*) FROM m1 WHERE n = ' . $i) eq '1' }, 60),
	'E: mallory\'s tables settled');
my $eve = RedisSync::Test::session($node);
$eve->query('SET ROLE eve');
my $r = $eve->query('BEGIN; LOCK TABLE redis_sync.dead_letters IN ACCESS EXCLUSIVE MODE; SELECT current_user');
like($r->{err} // '', qr/permission denied for table dead_letters/, 'E: eve may not lock redis_sync.dead_letters');
$redis->cli('HSET', 's1:1', 'n', '11');
$redis->cli('SADD', 's1-dirty', '1');
my $landed = RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM s1') eq '11' }, 20);
ok(defined $landed, 'E: a role owning no synced table cannot stop another table\'s drain');
my $fails_e = () = slurp_file($node->logfile) =~ /draining public\.s1 failed/g;
diag("E: s1 drain failures logged while eve holds the lock: $fails_e");
$eve->query('ROLLBACK');
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM s1') eq '11' }, 60),
	'E: after eve\'s transaction the change lands');
$eve->quit;

# shutdown: the SIGTERM cancels the batch under way (m_slow catches it and
# sleeps on until drain_timeout), the final round's batch stops at its
# deadline (tests/t/302 has a trigger that does not catch the cancel)
$node->safe_psql('postgres', q{UPDATE mctl SET mode = 'on'});
dirty_all(999);
sleep 0.3;
my $t0 = time;
$node->stop('fast');
my $stop = time - $t0;
diag(sprintf('pg_ctl stop -m fast took %.1f s (shutdown_drain_timeout = 500ms, drain_timeout = 1s)', $stop));
ok($stop < 3, 'the server stops within about shutdown_drain_timeout');

done_testing();

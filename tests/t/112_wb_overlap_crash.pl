# The overlapped drain (drain.c, "The overlapped drain"): while one batch
# is applied, Redis has already read the next batch and claimed the one
# after, so three batches are in flight.  The worker is caught in that
# state (a trigger on the table waits for an advisory lock the test holds),
# some of the in-flight members are changed and made dirty again, and then
#   1. the worker is SIGKILLed (the postmaster restarts everything), or
#   2. Redis is restarted (from a snapshot taken in that state), so the
#      pipeline the worker sent is lost with its connection.
# Either way nothing may be lost or acknowledged by the wrong batch: every
# row ends with the last value written to its key, the dirty and
# processing sets end empty, and there are no dead letters.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $KEYS  = 600;
my $BATCH = 100;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'wboverlap',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.retry_max_backoff = '500ms'
restart_after_crash = on
EOC

$node->safe_psql('postgres', qq{
CREATE TABLE ov (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO ov SELECT g, 0 FROM generate_series(1, $KEYS) g;
-- the drain waits here while the test holds advisory lock 4242
CREATE FUNCTION ov_gate() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM pg_catalog.pg_advisory_lock_shared(4242);
  PERFORM pg_catalog.pg_advisory_unlock_shared(4242);
  RETURN NEW;
END \$\$;
CREATE TRIGGER ov_gate BEFORE INSERT OR UPDATE ON ov FOR EACH ROW EXECUTE FUNCTION ov_gate();
SELECT redis_sync.write_behind('ov', key_prefix => 'ov:', flush_interval => '100 ms', batch_size => $BATCH);
});
my $proc = RedisSync::WB::processing_set('ov:dirty');

# Mark every key dirty with value $round; hold the gate; wait until the worker
# blocks in a batch with two more batches claimed (3 x $BATCH in processing).
# Returns the worker's pid.
sub catch_in_flight
{
	my ($round, $gate) = @_;
	my $pid = RedisSync::WB::wait_worker($node, timeout => 60);
	ok(defined $pid, "round $round: a worker runs");
	is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause(60000)'), 't', "round $round: worker paused");
	my $file = "$PostgreSQL::Test::Utils::tmp_check/ov_$round.resp";
	RedisSync::WB::write_resp($file,
		map { ([ 'HSET', "ov:$_", 'n', $round ], [ 'SADD', 'ov:dirty', $_ ]) } 1 .. $KEYS);
	RedisSync::WB::pipe_run($redis, $file, 2 * $KEYS);
	$gate->query('SELECT pg_advisory_lock(4242)');
	$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
	ok(defined RedisSync::Compare::wait_for(
			sub {
				$node->safe_psql('postgres',
					"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND wait_event_type = 'Lock'") eq '1'
				  && RedisSync::WB::scard($redis, $proc) >= 3 * $BATCH;
			}, 60),
		"round $round: the worker waits in a batch while Redis holds 3 batches in processing");
	# a claim takes batch_size members, or a few more (SSCAN returns whole hash buckets)
	my $inflight = RedisSync::WB::scard($redis, $proc);
	ok($inflight < 4 * $BATCH, "round $round: $inflight members in flight, not a fourth batch");
	is(RedisSync::WB::scard($redis, 'ov:dirty'), $KEYS - $inflight, "round $round: the rest is still dirty");
	return ($pid, $inflight);
}

# change 30 of the in-flight members again (absolute state: value $new)
sub redirty
{
	my ($new) = @_;
	my @members = (split /\n/, $redis->cli('SRANDMEMBER', $proc, 30));
	is(scalar @members, 30, '30 in-flight members');
	$redis->cli('HSET', "ov:$_", 'n', $new) for @members;
	$redis->cli('SADD', 'ov:dirty', @members);
	return map { $_ => 1 } @members;
}

# after the drain: every row has its key's last value, nothing is queued
sub check_final
{
	my ($round, $new, %changed) = @_;
	my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'ov', dirty => 'ov:dirty', timeout => 120);
	ok(defined $secs, "round $round: dirty and processing sets drained");
	my %rows = map { split /\|/ } split /\n/, $node->safe_psql('postgres', 'SELECT id, n FROM ov');
	my @wrong = grep { $rows{$_} != ($changed{$_} ? $new : $round) } 1 .. $KEYS;
	is(scalar @wrong, 0, "round $round: every row has the last value of its key")
	  or diag("wrong rows: @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)]");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0', "round $round: no dead letters");
	is(RedisSync::WB::scard($redis, $proc), 0, "round $round: processing set empty");
}

my $gate = RedisSync::Test::session($node);

# 1. SIGKILL with three batches in flight
my ($pid, $inflight) = catch_in_flight(1, $gate);
my %changed = redirty(11);
ok(kill('KILL', $pid), "SIGKILL worker $pid");
$gate->quit;    # the crash restart ends every session anyway
ok(defined RedisSync::WB::wait_worker($node, old_pid => $pid, timeout => 60), 'a new worker after the crash');
check_final(1, 11, %changed);

# 2. Redis restarts (from a snapshot of that state) under the worker's pipeline
$gate = RedisSync::Test::session($node);
($pid, $inflight) = catch_in_flight(2, $gate);
%changed = redirty(22);
is($redis->cli('SAVE'), 'OK', 'snapshot of Redis with three batches in flight');
kill('KILL', $redis->{pid});
ok(defined RedisSync::Compare::wait_for(sub { !kill(0, $redis->{pid}) }, 30), 'Redis killed');
$redis->{pid} = undef;
$redis->start;
is(RedisSync::WB::scard($redis, $proc), $inflight, 'Redis is back with the 3 batches in processing');
$gate->query('SELECT pg_advisory_unlock(4242)');
$gate->quit;
check_final(2, 22, %changed);
is(RedisSync::Compare::worker_stat($node, 'worker_pid'), $pid, 'the same worker drained it (no crash)');

done_testing();

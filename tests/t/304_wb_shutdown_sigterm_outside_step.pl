# Review of af503d2: the SIGTERM cancels only a step that is under way at
# that instant (rs_step_cancel_at_shutdown: step_running).  A SIGTERM that
# lands while the worker waits on Redis for a batch's claim (here: the
# recovery claim of a member left in the processing set, held by the
# proxy for a moment) is not seen by the batch that follows: it is armed
# with the full drain_timeout and runs its slow trigger to the end, and the
# fast shutdown waits for it, far past shutdown_drain_timeout.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::HoldProxy;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time sleep);

my $SLEEP = 20;
my $redis = RedisSync::Test::start_redis();
my $p = RedisSync::HoldProxy->start(upstream => $redis->port);
my $node = RedisSync::Test::new_node('sigterm_outside', redis_url => $p->url,
	extra_conf => "redis_sync.shutdown_drain_timeout = '500ms'\nredis_sync.command_timeout = '30s'\n");

$node->safe_psql('postgres', q{
CREATE TABLE slow (id int PRIMARY KEY, v int NOT NULL);
} . RedisSync::WB::sleep_trigger_sql('slow', $SLEEP) . q{
SELECT redis_sync.write_behind('slow', key_prefix => 'slow:', flush_interval => '100ms');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
# past the worker's first rounds (its start-up EVALSHAs)
ok($node->poll_query_until('postgres', 'SELECT worker_rounds >= 3 FROM redis_sync.worker_stats'),
	'the worker went through its first rounds');

my $from = $p->mark;
$p->arm_eval;
# a member left in the processing set (as after a crash): the next due
# round's recovery claim (an EVALSHA) takes it
$redis->cli('HSET', 'slow:1', 'v', '5');
$redis->cli('SADD', RedisSync::WB::processing_set('slow:dirty'), '1');
ok(defined $p->wait_line(qr/^held-data \d+ \d+ .*EVALSHA/, 30, $from), 'the worker\'s claim is held');
diag(join("\n", $p->grep_lines(qr/^(hold|held-data)/, $from)));

my $pid_file = $node->data_dir . '/postmaster.pid';
open my $fh, '<', $pid_file or die; my $postmaster = <$fh>; chomp $postmaster; close $fh;

my $log_offset = -s $node->logfile;
my $t0 = time;
kill 'INT', $postmaster;    # fast shutdown: the worker gets its SIGTERM now
# the postmaster has signalled its children once the launcher has exited
my $deadline = time + 30;
until (substr(slurp_file($node->logfile), $log_offset) =~ /"redis_sync launcher" \(PID \d+\) exited/)
{
	die 'the launcher did not exit' if time > $deadline;
	sleep 0.05;
}
$p->release;
while (kill(0, $postmaster) && time - $t0 < 60) { sleep 0.1; }
my $stop = time - $t0;
my $log = substr(slurp_file($node->logfile), $log_offset);
diag(sprintf('fast shutdown, SIGTERM during the claim, %d s trigger: %.1f s', $SLEEP, $stop));
cmp_ok($stop, '<', 10, 'the batch claimed when the SIGTERM came does not hold the shutdown for its whole trigger');
$node->_update_pid(0);

$redis->stop;
done_testing();

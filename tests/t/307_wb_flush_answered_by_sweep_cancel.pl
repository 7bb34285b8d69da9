# Review 2 of af503d2..3f7d612: the sticky SIGTERM cancels an in-flight
# marker's repair (marker_sweep.c): the cancel is transient there, so the
# sweep re-throws it out of the round, and guarded_round() answers the
# flush() waiting for that round as failed (rs_flush_completed(gen, 0, 1)).
# flush(tbl) then returns without its table drained and without a word
# (warn_table_failed() sees no retry of tbl), though nothing failed: the
# worker was only stopping, and its final round drains tbl a moment later.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use RedisSync::WB;
use IPC::Run ();
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('flush_sweep', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\nredis_sync.warm_timeout = '60s'\n"
	  . "redis_sync.shutdown_drain_timeout = '5s'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('gate', then => 'PERFORM pg_catalog.pg_sleep(3600);') . q{
CREATE TABLE ti (id int PRIMARY KEY, v text);
}
	. RedisSync::OwnerCode::forced_policy_sql('ti', 'gated', 'public.gate()') . q{
SELECT redis_sync.write_through('ti', key_prefix => 'ti:');
INSERT INTO ti VALUES (1, 'committed');
CREATE TABLE ctl0 (slow bool NOT NULL);
INSERT INTO ctl0 VALUES (false);
CREATE TABLE w0 (id int PRIMARY KEY, v int NOT NULL);
} . RedisSync::WB::sleep_trigger_sql('w0', 3, '(SELECT slow FROM public.ctl0)') . q{
SELECT redis_sync.write_behind('w0', key_prefix => 'w0:', flush_interval => '100ms');
CREATE TABLE w (id int PRIMARY KEY, v int NOT NULL);
} . RedisSync::WB::sleep_trigger_sql('w', 0.5) . q{
SELECT redis_sync.write_behind('w', key_prefix => 'w:', flush_interval => '1h');
});
my $old = RedisSync::WB::wait_worker($node, timeout => 30);
ok(defined $old, 'worker running');
my $ti     = RedisSync::OwnerCode::table_oid($node, 'ti');
my $marker = RedisSync::OwnerCode::marker_key($node);
# the worker has seen w once (first sight: crash leftovers only)
my $rounds = RedisSync::Compare::worker_stat($node, 'worker_rounds');
ok($node->poll_query_until('postgres', "SELECT worker_rounds >= $rounds + 2 FROM redis_sync.worker_stats"),
	'the worker went through two more rounds');

# round R0 is held 3 s by w0's trigger
$node->safe_psql('postgres', 'UPDATE ctl0 SET slow = true');
$redis->cli('HSET', 'w0:1', 'v', '1');
$redis->cli('SADD', 'w0:dirty', '1');
ok(RedisSync::WB::worker_sleeping($node),
	'round R0 is in w0\'s 3 s trigger');

# meanwhile: a marker whose repair blocks (the policy), w dirty, flush(w)
$node->safe_psql('postgres', 'UPDATE ctl SET block = true; UPDATE ctl0 SET slow = false');
$redis->cli('HSET', 'ti:1', 'v', 'uncommitted');
RedisSync::OwnerCode::plant_marker($redis, $marker, '6:1:0:0', $ti, '1');
$redis->cli('HSET', 'w:1', 'v', '5');
$redis->cli('SADD', 'w:dirty', '1');
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
	  q{SELECT 'flushed=' || redis_sync.flush('w')}, '-c',
	  q{SELECT 'row=' || coalesce((SELECT v::text FROM w WHERE id = 1), 'none')} ],
	'>', \$out, '2>', \$err);

# the round serving flush(w) sweeps first: the repair blocks in the policy
ok(RedisSync::WB::worker_sleeping($node, '%in-flight markers%'),
	'the next round is in the blocked repair, flush(w) waiting');
ok($h->pumpable, 'flush(w) still waits');

$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
my $deadline = time + 60;
while (time < $deadline && $h->pumpable)
{
	$h->pump_nb;
	select(undef, undef, undef, 0.05);
}
$h->finish;
like($out, qr/row=5/, 'flush(w) returns once w:1 is in the table') or diag("flush session: $out$err");
# the next worker's repair blocks again: its attempt is the only one counted
ok(defined RedisSync::WB::wait_worker($node, old_pid => $old, timeout => 30), 'the next worker runs');
ok(RedisSync::WB::worker_sleeping($node, '%in-flight markers%'),
	'the next worker is in the repair');
is($redis->cli('HGET', "$marker:attempts", '6:1:0:0'), '1',
	'the repair cancelled at shutdown was not counted as an attempt');

$node->safe_psql('postgres', 'UPDATE ctl SET block = false');
$node->stop;
$redis->stop;
done_testing();

# Review 2 of af503d2..3f7d612: a pg_terminate_backend() of the worker while
# redis_sync.flush(tbl) waits for it.  The round under way is cut by the
# SIGTERM (its batch cancelled at shutdown, or the round stopped before the
# next batch), yet drain_step() answers the flush() as done: table_failed()
# returns early for a shutdown cancel but drain_due() still counts it in
# *failed, and *cut_short is only set at a deadline.  flush(tbl) then
# returns as if the table were drained (warn_table_failed() sees no retry
# counted), its key still in Redis, instead of waiting for the next worker.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use IPC::Run ();
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('flush_shutdown', redis => $redis,
	extra_conf => "redis_sync.shutdown_drain_timeout = '500ms'\n");

$node->safe_psql('postgres', q{
CREATE TABLE ctl (slow bool NOT NULL);
INSERT INTO ctl VALUES (true);
CREATE TABLE fl (id int PRIMARY KEY, v int NOT NULL);
} . RedisSync::WB::sleep_trigger_sql('fl', 30, '(SELECT slow FROM public.ctl)') . q{
SELECT redis_sync.write_behind('fl', key_prefix => 'fl:', flush_interval => '1h');
});
my $old = RedisSync::WB::wait_worker($node, timeout => 30);
ok(defined $old, 'worker running');
# let the worker see the table once (its first round: crash leftovers only)
my $rounds = RedisSync::Compare::worker_stat($node, 'worker_rounds');
ok($node->poll_query_until('postgres', "SELECT worker_rounds >= $rounds + 2 FROM redis_sync.worker_stats"),
	'the worker went through two more rounds');

$redis->cli('HSET', 'fl:1', 'v', '5');
$redis->cli('SADD', 'fl:dirty', '1');

# flush(fl) in a session of its own: the forced round runs the 30 s trigger
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
	  q{SELECT 'flushed=' || redis_sync.flush('fl')}, '-c',
	  q{SELECT 'row=' || coalesce((SELECT v::text FROM fl WHERE id = 1), 'none')} ],
	'>', \$out, '2>', \$err);
ok(RedisSync::WB::worker_sleeping($node),
	'the forced round is in the slow trigger');

$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
# the old worker gone (its final round cancelled at 500 ms), the trigger
# is made fast: the next worker drains the key at once
my $deadline = time + 30;
while (time < $deadline)
{
	last if $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $old") eq '0';
	select(undef, undef, undef, 0.05);
}
$node->safe_psql('postgres', 'UPDATE ctl SET slow = false');

$deadline = time + 60;
while (time < $deadline && $h->pumpable)
{
	$h->pump_nb;
	select(undef, undef, undef, 0.05);
}
$h->finish;
like($out, qr/row=5/,
	'flush(fl) returns once the key is in the table (it waits for the next worker)')
  or diag("flush session: $out$err");
unlike($err, qr/could not be drained/,
	'and does not warn: the batches cancelled at shutdown are not the table\'s failures');
is($node->safe_psql('postgres', q{SELECT drain_retries FROM redis_sync.stats WHERE "table" = 'fl'::regclass AND policy = 'write_behind'}),
	'0', 'no drain retry counted');

$node->stop;
$redis->stop;
done_testing();

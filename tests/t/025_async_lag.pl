# Async delivery (write_through(..., delivery => 'async')): the committing
# transaction does no network I/O; the worker, woken at commit, delivers the
# change.  2,000 single-row UPDATEs at a steady rate: 1,800 from pgbench
# (-R, rows 1..1000) and 200 sampled ones from this script (rows
# 1001..1200).  For each sample the lag from "COMMIT returned" to "the new
# value is readable in Redis" is measured by polling Redis in a tight loop
# over a persistent RESP connection.  p50/p99 are reported; the assertion is
# loose (every change visible within 5 s).  Finally the worker's outbox
# delivery rate is measured: 10,000 entries queued while the worker is
# paused, then the time until the outbox is empty.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use IPC::Run ();
use Test::More;
use Time::HiRes qw(time sleep);

my $SAMPLES   = 200;
my $BENCH     = 1_800;
my $RATE      = 200;      # pgbench transactions per second
my $BULK      = 10_000;
my $MAX_LAG   = 5;        # seconds

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('asynclag', redis => $redis);

my $at = RedisSync::Synced::synced_table($node, 'a', with => "delivery => 'async'", rows => 1200);
my $bulk = RedisSync::Synced::synced_table($node, 'bulk', prefix => 'b:',
	columns => 'id int PRIMARY KEY, v int', with => "delivery => 'async'",
	fill => "SELECT g, g FROM generate_series(1, $BULK) g");
ok(defined RedisSync::Compare::wait_outbox_empty($node, 60),
	'initial rows delivered');
$at->cache_matches($redis, name => 'async table cached');

# a RESP client on one persistent connection
my $resp = $redis->resp;
sub redis_cmd { return $resp->cmd(@_); }
is(redis_cmd('HGET', 'a:1', 'note'), 'n1', 'RESP client reads the cache');

# background load: pgbench at a steady rate on rows 1..1000
my $script = PostgreSQL::Test::Utils::tempdir() . '/u.sql';
open my $fh, '>', $script or die;
print $fh "\\set id random(1, 1000)\nUPDATE a SET v = v + 1, note = 'b' || :id WHERE id = :id;\n";
close $fh;
my ($bout, $berr) = ('', '');
my $bench = IPC::Run::start(
	[
		$node->installed_command('pgbench'), '-n', '-c', '1', '-R', $RATE,
		'-t', $BENCH, '-f', $script, '-d', $node->connstr('postgres')
	],
	'>', \$bout, '2>', \$berr);

# sampled updates, spread over the pgbench run
my $s = RedisSync::Test::session($node);
my $span = $BENCH / $RATE;    # seconds pgbench runs
my $t_start = time;
my (@lags, $late);
for my $i (1 .. $SAMPLES)
{
	# rate control (not synchronisation): sample i starts at its slot
	my $slot = $t_start + ($i - 1) * $span / $SAMPLES;
	sleep($slot - time) if $slot > time;

	my $id  = 1000 + $i;
	my $val = "s$i";
	my $r   = $s->query("UPDATE a SET note = '$val' WHERE id = $id");
	my $t_commit = time;
	die "sample $i failed: $r->{err}" if $r->{err} ne '';
	my $seen;
	while (1)
	{
		my $got = redis_cmd('HGET', "a:$id", 'note');
		if (defined $got && $got eq $val) { $seen = time; last; }
		last if time - $t_commit > $MAX_LAG;
	}
	if (!defined $seen) { $late++; next; }
	push @lags, $seen - $t_commit;
}
$bench->finish;
like($bout, qr/number of transactions actually processed: $BENCH\/$BENCH/,
	"pgbench committed $BENCH async UPDATEs at $RATE tps") or diag("$bout\n$berr");
is($late // 0, 0, "every sampled change visible in Redis within ${MAX_LAG}s");
is(scalar(@lags), $SAMPLES, "$SAMPLES lags measured");

my @sorted = sort { $a <=> $b } @lags;
sub pct { my $p = shift; return $sorted[ int($p / 100 * $#sorted + 0.5) ] * 1000; }
diag(sprintf('async commit-to-Redis lag over %d samples (under %d tps of other async commits): '
		  . 'p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms',
		scalar(@sorted), $RATE, pct(50), pct(90), pct(99), $sorted[-1] * 1000))
  if @sorted;
diag(sprintf('load phase took %.1fs', time - $t_start));

ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'outbox empty after the load');
$at->cache_matches($redis,
	name => 'async table: cache == table after the load');

# delivery rate: 10,000 queued entries, then let the worker go
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$node->safe_psql('postgres', 'UPDATE bulk SET v = v + 1');
is(RedisSync::Compare::outbox_depth($node), $BULK, "$BULK entries queued");
my $t0 = time;
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
my $w = RedisSync::Compare::wait_outbox_empty($node, 60, 0.005);
ok(defined $w, "worker delivered $BULK entries");
diag(sprintf('outbox delivery: %d entries in %.3fs = %.0f rows/s',
		$BULK, $w, $BULK / $w)) if $w;
$bulk->cache_matches($redis, 'bulk table: cache == table');

$resp->close;
$s->quit;
$node->stop;
done_testing();

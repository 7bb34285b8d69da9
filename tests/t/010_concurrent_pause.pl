# Write-through under concurrency while Redis stalls: 8 pgbench clients run
# transactions for 10 s (UPDATE, DELETE+re-INSERT in one transaction, DELETE,
# upsert) on a 1,000-row eventual write-through table, with
# redis_sync.command_timeout = 200ms.  Redis is paused twice for 600ms
# meanwhile: the transactions caught in a pause must still commit and queue
# their keys in redis_sync.outbox.  After pgbench ends and the outbox is
# drained, every row must be in Redis exactly as in the table, and deleted
# rows must have no key (late and replayed writes are fenced by versions).
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

my $CLIENTS = 8;
my $RUN_SECONDS = 10;      # pgbench runs by time, so it outlasts both pauses
my $ROWS    = 1_000;
my $PAUSE   = 600;     # ms, longer than command_timeout

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'pause',
	redis      => $redis,
	extra_conf => "redis_sync.command_timeout = '200ms'\n");

my $t = RedisSync::Synced::synced_table($node, 't', prefix => 'k:', rows => $ROWS);
$t->cache_matches($redis,
	name => 'initial rows are cached');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	'0', 'outbox empty before the run');

# pgbench scripts; each transaction touches one row, and every script keeps
# the id re-creatable, so at the end some ids exist and some are deleted.
my $dir = PostgreSQL::Test::Utils::tempdir();
my %scripts = (
	'update.sql' => [
		6, <<'SQL'],
\set id random(1, 1000)
\set v random(1, 1000000)
UPDATE t SET v = :v, note = CASE WHEN :v % 7 = 0 THEN NULL ELSE 'u' || :v END WHERE id = :id;
SQL
	'recreate.sql' => [
		2, <<'SQL'],
\set id random(1, 1000)
\set v random(1, 1000000)
BEGIN;
DELETE FROM t WHERE id = :id;
INSERT INTO t VALUES (:id, :v, 'r' || :v) ON CONFLICT DO NOTHING;
COMMIT;
SQL
	'delete.sql' => [
		1, <<'SQL'],
\set id random(1, 1000)
DELETE FROM t WHERE id = :id;
SQL
	'upsert.sql' => [
		1, <<'SQL'],
\set id random(1, 1000)
\set v random(1, 1000000)
INSERT INTO t VALUES (:id, :v, 'i' || :v)
  ON CONFLICT (id) DO UPDATE SET v = excluded.v, note = excluded.note;
SQL
);
my @fopts;
for my $f (sort keys %scripts)
{
	my ($w, $body) = @{ $scripts{$f} };
	open my $fh, '>', "$dir/$f" or die "$dir/$f: $!";
	print $fh $body;
	close $fh;
	push @fopts, '-f', "$dir/$f\@$w";
}

sub redis_commands
{
	my ($v) = $redis->cli('INFO', 'stats') =~ /total_commands_processed:(\d+)/;
	return $v // 0;
}

sub queued_total
{
	# every outbox row ever written takes one id from the sequence
	return $node->safe_psql('postgres',
		"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM redis_sync.outbox_id_seq");
}

# wait (deadline-bound) until Redis has processed $n more commands
sub wait_commands
{
	my ($base, $n, $what) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (redis_commands() < $base + $n)
	{
		die "no progress ($what)" if time > $deadline;
		sleep 0.02;
	}
	return;
}

my ($out, $err) = ('', '');
my $t0 = time;
my $bench = IPC::Run::start(
	[
		$node->installed_command('pgbench'), '-n',
		'-c', $CLIENTS, '-j', $CLIENTS,
		'-T', $RUN_SECONDS, @fopts,
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'<', \undef, '>', \$out, '2>', \$err,
	IPC::Run::timeout(600));

my @queued_in_pause;
for my $pass (1, 2)
{
	my $base = redis_commands();
	wait_commands($base, 2000, "before pause $pass");
	ok($bench->pumpable, "pgbench still running before pause $pass");
	my $q0 = queued_total();
	is($redis->pause_ms($PAUSE), 'OK', "pause $pass: Redis paused ${PAUSE}ms");
	# redis-cli waits out the pause
	is($redis->cli('PING'), 'PONG', "pause $pass is over");
	my $q1 = queued_total();
	push @queued_in_pause, $q1 - $q0;
	cmp_ok($q1 - $q0, '>', 0,
		"pause $pass: stalled transactions committed and queued in the outbox");
}

$bench->finish;
my $bench_rc = $? >> 8;
my $elapsed = time - $t0;
is($bench_rc, 0, 'pgbench exit code 0') or diag("pgbench stderr:\n$err");
my ($txns) = $out =~ /number of transactions actually processed: (\d+)/;
cmp_ok($txns // 0, '>', 0, 'pgbench committed transactions');
like($out, qr/number of failed transactions: 0 \(/, 'no failed transactions')
  if $out =~ /number of failed transactions/;
note($out);

my $queued = queued_total();
diag(sprintf('pgbench: %d transactions in %.1fs; outbox entries queued: %d '
	  . '(during pause 1: %d, pause 2: %d)',
	$txns // 0, $elapsed, $queued, @queued_in_pause));
cmp_ok($queued, '>', 0, 'outbox entries were queued');

my $delivered = RedisSync::Compare::drain_outbox($node);
note("deliver_outbox() delivered $delivered entries");
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	'0', 'outbox drained');

my $left = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
diag("rows at the end: $left of $ROWS ids");
cmp_ok($left, '<', $ROWS, 'some ids are deleted at the end');
cmp_ok($left, '>', 0,     'some ids exist at the end');

$t->cache_matches($redis,
	name => 'after the run and the drain: cache == table');

# explicit: no key for any deleted id
my $tab_ids = { map { $_ => 1 } split /\n/,
	  $node->safe_psql('postgres', 'SELECT id FROM t') };
my @stale;
for my $id (1 .. $ROWS)
{
	next if $tab_ids->{$id};
	push @stale, $id if $redis->cli('EXISTS', "k:$id") ne '0';
	last if @stale > 10;
}
is(scalar(@stale), 0, 'deleted ids have no key in Redis')
  or diag("ids with a key: @stale");

$node->stop;
$redis->stop;

done_testing();

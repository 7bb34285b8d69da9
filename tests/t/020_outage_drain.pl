# Redis outages and the background worker.
#
# Part 1, Redis stopped: 1,000 single-row UPDATEs (each its own transaction,
# pgbench) on an eventual write-through table commit and queue their keys in
# redis_sync.outbox; the circuit breaker opens; strict writes then fail fast
# with "the circuit breaker is open".  Redis is started again (same port,
# empty; rewarm_on_restart off so only the outbox can fill the cache): the
# worker drains the outbox on its own and cache == table.  The time from the
# restart to an empty outbox is reported.
#
# Part 2, Redis hung (SIGSTOP: connections are accepted by the kernel but
# nothing answers, so each try costs a full command_timeout): strict writes
# time out until the circuit opens after redis_sync.circuit_failures (3)
# connection failures; then N strict writes fail in a small fraction of
# N * command_timeout, eventual writes queue without waiting.  The pushes of
# the strict writes that timed out sit in Redis's socket buffers and are
# applied when Redis resumes, after their transactions aborted: the worker's
# in-flight marker sweep must repair them (cache == table for the strict
# table).  CLIENT PAUSE is not used for this part because Redis 7.0 holds
# CLIENT UNPAUSE itself until the pause ends, so the hang could not be ended
# on cue; SIGSTOP/SIGCONT has the same effect on clients.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use IPC::Run ();
use Test::More;
use Time::HiRes qw(time);

my $ROWS       = 1_000;
my $TIMEOUT_MS = 500;    # connect_timeout and command_timeout
my $N          = 20;     # strict writes timed against the open circuit

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'outage',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.connect_timeout = '${TIMEOUT_MS}ms'
redis_sync.command_timeout = '${TIMEOUT_MS}ms'
redis_sync.marker_sweep_interval = '200ms'
redis_sync.retry_max_backoff = '1s'
redis_sync.rewarm_on_restart = off
EOC

my $t = RedisSync::Synced::synced_table($node, 't',
	with => "consistency => 'eventual'", rows => $ROWS);
my $st = RedisSync::Synced::synced_table($node, 's',
	with => "consistency => 'strict'",
	fill => "SELECT g, g, 's' || g FROM generate_series(1, 10) g",
	sql  => 'CREATE SEQUENCE ids;');
$t->cache_matches($redis,
	name => 'eventual table cached before the outage');
$st->cache_matches($redis,
	name => 'strict table cached before the outage');
is(RedisSync::Compare::worker_stat($node, 'worker_running'),
	't', 'worker is running');
is(RedisSync::Compare::worker_stat($node, 'circuit'), 'closed', 'circuit closed');

my $s = RedisSync::Test::session($node);

##########################################################################
# Part 1: Redis stopped
##########################################################################
my $opens0 = RedisSync::Compare::worker_stat($node, 'circuit_opens');
$redis->stop;

# 1,000 single-row UPDATEs, one transaction each, every row once
my $script = PostgreSQL::Test::Utils::tempdir() . '/update.sql';
open my $fh, '>', $script or die "$script: $!";
print $fh <<'SQL';
WITH n AS MATERIALIZED (SELECT nextval('ids')::int AS id)
UPDATE t SET v = t.v + 1000000, note = 'outage' FROM n WHERE t.id = n.id;
SQL
close $fh;
my ($out, $err) = ('', '');
my $t0 = time;
my $ok = IPC::Run::run(
	[
		$node->installed_command('pgbench'), '-n', '-c', '1', '-t', $ROWS,
		'-f', $script, '-d', $node->connstr('postgres')
	],
	'>', \$out, '2>', \$err);
my $bench_secs = time - $t0;
ok($ok, "pgbench ran $ROWS UPDATE transactions with Redis stopped")
  or diag("$out\n$err");
like($out, qr/number of transactions actually processed: $ROWS\/$ROWS/,
	"all $ROWS transactions committed");
diag(sprintf('%d eventual UPDATEs with Redis stopped: %.2fs (%.0f tps)',
		$ROWS, $bench_secs, $ROWS / $bench_secs));
is($node->safe_psql('postgres', "SELECT count(*) FROM t WHERE note = 'outage'"),
	$ROWS, 'every row updated in the table');
is( $node->safe_psql(
		'postgres',
		"SELECT count(DISTINCT redis_key) FROM redis_sync.outbox WHERE redis_key LIKE 't:%'"),
	$ROWS,
	"outbox holds the $ROWS changed keys");

# the circuit is open (worker probes and backends count as failures)
my $w = RedisSync::Compare::wait_for(
	sub { RedisSync::Compare::worker_stat($node, 'circuit') eq 'open' }, 10);
ok(defined $w, 'circuit breaker opened with Redis stopped');
cmp_ok(RedisSync::Compare::worker_stat($node, 'circuit_opens'),
	'>', $opens0, 'circuit_opens counted');

# strict writes fail fast with the circuit open
my $sql = join("\n", map { "UPDATE s SET v = v + 1 WHERE id = " . (1 + $_ % 10) . ";" } 1 .. $N);
my $r = $s->query($sql);
my @errs = ($r->{err} =~ /^(?:psql:\S+ )?ERROR:  (.*)$/mg);
is(scalar(@errs), $N, "$N strict UPDATEs all failed (Redis stopped)");
is(scalar(grep { /could not push changes to Redis/ } @errs),
	$N, "... with 'could not push changes to Redis'");
like($r->{err}, qr/circuit breaker is open/, '... saying the circuit breaker is open');
my $limit = $N * $TIMEOUT_MS / 1000 / 10;
cmp_ok($r->{elapsed}, '<', $limit,
	"$N strict writes (Redis stopped) take < N*command_timeout/10 = ${limit}s");
diag(sprintf('Redis stopped, circuit open: %d strict writes failed in %.3fs', $N, $r->{elapsed}));
is($node->safe_psql('postgres', 'SELECT sum(v) FROM s'), '55', 'strict table unchanged');

# Redis back on the same port, empty: the worker drains the outbox by itself
my $depth = RedisSync::Compare::outbox_depth($node);
$t0 = time;
$redis->start;
my ($t_closed, $t_first);
my $drain = RedisSync::Compare::wait_for(
	sub {
		my ($d, $c) = split /\|/, $node->safe_psql('postgres',
			'SELECT outbox_depth, circuit FROM redis_sync.worker_stats');
		$t_closed //= time if $c eq 'closed';
		$t_first //= time if $d < $depth;
		return $d == 0;
	},
	30, 0.005);
my $drain_total = time - $t0;
ok(defined $drain, "worker drained the outbox ($depth entries) within 30s of Redis's restart");
diag(sprintf('drain after Redis restart: %d queued entries, restart to empty outbox %.3fs '
		  . '(circuit closed after %.3fs, first entries gone after %.3fs; worker backoff '
		  . 'capped by retry_max_backoff = 1s)',
		$depth, $drain_total, ($t_closed // time) - $t0, ($t_first // time) - $t0));
$t->cache_matches($redis,
	name => 'eventual table: cache == table after the drain');
my $wc = RedisSync::Compare::wait_for(
	sub { RedisSync::Compare::worker_stat($node, 'circuit') eq 'closed' }, 10);
ok(defined $wc, 'circuit closed again');
is($node->safe_psql('postgres',
		qq{SELECT delivered >= $ROWS AND outbox_depth = 0 FROM redis_sync.stats WHERE "table" = 't'::regclass}),
	't', 'stats: delivered counts the drained entries, outbox_depth 0');

# the strict table was lost with Redis's memory: warm it
is($node->safe_psql('postgres', "SELECT redis_sync.warm('s')"), '10', 'warm(s) pushed 10 rows');
$st->cache_matches($redis,
	name => 'strict table: cache == table after warm()');
$r = $s->query("UPDATE s SET v = v + 1 WHERE id = 1");
is($r->{err}, '', 'strict writes work again');

##########################################################################
# Part 2: Redis hung (SIGSTOP): every try costs command_timeout
##########################################################################
my $redis_pid = $redis->{pid};
my $fails0 = RedisSync::Compare::worker_stat($node, 'circuit_opens');
kill 'STOP', $redis_pid or die "SIGSTOP $redis_pid: $!";
my $stopped = 1;
END { kill 'CONT', $redis_pid if $stopped && $redis_pid; }

my @slow;
my $tries = 0;
while ($tries < 6)
{
	$tries++;
	my $x = $s->query("UPDATE s SET v = v + 100, note = 'lost$tries' WHERE id = $tries");
	push @slow, $x;
	last if RedisSync::Compare::worker_stat($node, 'circuit') eq 'open';
}
like($slow[0]{err}, qr/ERROR:  could not push changes to Redis/,
	'first strict write against the hung Redis fails');
like($slow[0]{err}, qr/did not answer within $TIMEOUT_MS ms|could not connect/,
	'... after a timeout');
cmp_ok($slow[0]{elapsed}, '>=', 0.8 * $TIMEOUT_MS / 1000,
	'... which took about command_timeout');
is(RedisSync::Compare::worker_stat($node, 'circuit'), 'open',
	"circuit opened after $tries strict write(s) timed out");
cmp_ok($tries, '<=', 3, 'circuit opened within circuit_failures (3) timed-out writes');
cmp_ok(RedisSync::Compare::worker_stat($node, 'connection_failures'),
	'>=', 3, 'connection_failures >= 3 when the circuit opened');
diag(sprintf('Redis hung: %d strict write(s) timed out before the circuit opened (%s s)',
		$tries, join(', ', map { sprintf '%.3f', $_->{elapsed} } @slow)));

$r = $s->query($sql);
@errs = ($r->{err} =~ /^(?:psql:\S+ )?ERROR:  (.*)$/mg);
is(scalar(@errs), $N, "$N strict UPDATEs all failed (Redis hung)");
is(scalar(() = $r->{err} =~ /circuit breaker is open/g),
	$N, '... every one because the circuit breaker is open');
cmp_ok($r->{elapsed}, '<', $limit,
	"$N strict writes (Redis hung) take < N*command_timeout/10 = ${limit}s");
diag(sprintf('Redis hung, circuit open: %d strict writes failed in %.3fs (%.1f ms each; '
		  . 'command_timeout %d ms)', $N, $r->{elapsed}, 1000 * $r->{elapsed} / $N, $TIMEOUT_MS));

# eventual writes do not wait either
$r = $s->query(join("\n", map { "UPDATE t SET v = v + 1, note = 'hung' WHERE id = $_;" } 1 .. $N));
is($r->{err}, '', "$N eventual UPDATEs commit while Redis hangs");
cmp_ok($r->{elapsed}, '<', $limit, "... in < ${limit}s");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM redis_sync.outbox WHERE redis_key LIKE 't:%'"),
	$N, '... and are queued in the outbox');

# resume Redis: the queued changes are delivered, the circuit closes, and
# the strict pushes that were stuck in the socket buffers (their
# transactions aborted) are repaired by the marker sweep
kill 'CONT', $redis_pid;
$stopped = 0;
$drain = RedisSync::Compare::wait_outbox_empty($node, 30);
ok(defined $drain, 'outbox drained after Redis resumed');
$wc = RedisSync::Compare::wait_for(
	sub { RedisSync::Compare::worker_stat($node, 'circuit') eq 'closed' }, 10);
ok(defined $wc, 'circuit closed after Redis resumed');
$t->wait_cache_matches($redis,
	name => 'eventual table: cache == table after the hang');
$st->wait_cache_matches($redis,
	timeout => 30,
	name    => 'strict table: cache == table (late pushes of aborted writes repaired)');
is($redis->cli('HLEN', $node->safe_psql('postgres',
			"SELECT 'redis_sync:inflight:' || system_identifier || ':' || (SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()")),
	'0', 'no in-flight markers left');

$r = $s->query("UPDATE s SET v = v + 1 WHERE id = 2");
is($r->{err}, '', 'strict writes work again');
$st->cache_matches($redis,
	name => 'strict table: cache == table at the end');

$s->quit;
$node->stop;
done_testing();

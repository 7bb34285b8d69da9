# Chaos: the worker terminated over and over under load.
#
# An async write-through table (1,000 rows) is updated by pgbench (4 clients,
# random UPDATEs), and a write-behind table with a counter column is fed by
# 3 redis-cli --pipe clients (HINCRBY + SADD, a known number of increments per
# key; half the rows exist before write_behind() with n = 1000, unseeded, the
# other half are created by the drain; a trigger makes each drained row take
# 2 ms, so that a termination often lands in a batch under way).  Meanwhile the worker is terminated
# with pg_terminate_backend() 16 times (0.3-0.7 s apart, each time waiting for
# the launcher's new worker), and once in the middle the server is stopped
# with pg_ctl stop -m fast and started again.  Each SIGTERM cancels the
# worker's step under way and runs a final round bounded by
# shutdown_drain_timeout (README guarantees 3 and 4).
#
# At the end, after a flush: the write-through cache equals the table, every
# counter equals its initial value plus the increments exactly (nothing lost,
# nothing applied twice) in the table and in Redis, no dead letters, the
# outbox is empty, and the log shows no crash (PANIC, TRAP, a process
# terminated by a signal).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use RedisSync::WB;
use IPC::Run ();
use Test::More;
use Time::HiRes qw(time sleep);

my $ROWS       = 1_000;    # write-through rows
my $WB_KEYS    = 500;      # write-behind keys: 1..250 pre-existing, 251..500 new
my $WB_PRE     = 250;
my $WB_BASE    = 1000;     # n of the pre-existing rows
my $WB_CLIENTS = 3;
my $WB_CHUNKS  = 40;       # chunk files per client
my $WB_CHUNK   = 250;      # HINCRBY+SADD pairs per chunk
my $KILLS      = 16;       # pg_terminate_backend() of the worker
my $STOP_AFTER = 8;        # pg_ctl stop -m fast + start after this many kills

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'term_chaos',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.shutdown_drain_timeout = '2s'
redis_sync.retry_max_backoff = '1s'
log_statement = 'none'
EOC

# write-through, async
my $t = RedisSync::Synced::synced_table($node, 't', prefix => 'k:', rows => $ROWS,
	with => "delivery => 'async'");
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30), 'initial rows delivered');
$t->cache_matches($redis, name => 'initial rows are cached');

# write-behind with a counter
$node->safe_psql('postgres', qq{
CREATE TABLE wb (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO wb SELECT g, $WB_BASE FROM generate_series(1, $WB_PRE) g;
-- 2 ms a row: a batch of 100 takes 0.2 s, so the terminations land in batches
CREATE FUNCTION wb_slow() RETURNS trigger LANGUAGE plpgsql AS
  \$\$BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END\$\$;
CREATE TRIGGER wb_slow BEFORE INSERT OR UPDATE ON wb FOR EACH ROW EXECUTE FUNCTION wb_slow();
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', counters => '{n}',
                               flush_interval => '50 ms', batch_size => 100);
});
my $PROC = RedisSync::WB::processing_set('wb:dirty');

# the write-behind load: per client, chunk files of HINCRBY + SADD
my $dir = "$PostgreSQL::Test::Utils::tmp_check/term_chaos";
mkdir $dir or die "$dir: $!";
my %incs;
for my $c (0 .. $WB_CLIENTS - 1)
{
	for my $k (0 .. $WB_CHUNKS - 1)
	{
		my @cmds;
		for my $j (0 .. $WB_CHUNK - 1)
		{
			my $id = (($k * $WB_CHUNK + $j + $c * 97) % $WB_KEYS) + 1;
			my $by = 1 + ($j % 3);
			$incs{$id} += $by;
			push @cmds, [ 'HINCRBY', "wb:$id", 'n', $by ], [ 'SADD', 'wb:dirty', $id ];
		}
		RedisSync::WB::write_resp("$dir/c${c}_k$k.resp", @cmds);
	}
}
my $WB_TOTAL = 0;
$WB_TOTAL += $_ for values %incs;
is(scalar(keys %incs), $WB_KEYS, "every write-behind key gets increments ($WB_TOTAL in all)");

my $cli  = RedisSync::Test::redis_cli_bin();
my $port = $redis->port;
my @wb_clients;
for my $c (0 .. $WB_CLIENTS - 1)
{
	my $last = $WB_CHUNKS - 1;
	my $script = <<"EOS";
set -e
for k in \$(seq 0 $last); do
  $cli -h 127.0.0.1 -p $port --pipe < $dir/c${c}_k\$k.resp > $dir/c${c}_k\$k.out 2>&1
  sleep 0.6   # pacing: the load spans the terminations
done
EOS
	my ($out, $err) = ('', '');
	push @wb_clients,
	  {
		h   => IPC::Run::start([ 'bash', '-c', $script ], '<', \undef, '>', \$out,
			'2>', \$err, IPC::Run::timeout(300)),
		err => \$err
	  };
}

# pgbench: random UPDATEs of the write-through table
my $sql = "$dir/update.sql";
open my $fh, '>', $sql or die "$sql: $!";
print $fh <<'SQL';
\set id random(1, 1000)
\set v random(1, 1000000)
UPDATE t SET v = :v, note = 'u' || :v WHERE id = :id;
SQL
close $fh;

sub start_pgbench
{
	my ($secs) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			$node->installed_command('pgbench'), '-n', '-c', 4, '-j', 4,
			'-T', $secs, '-f', $sql,
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300));
	return { h => $h, out => \$out, err => \$err };
}

sub txns { my ($b) = @_; my ($n) = ${ $b->{out} } =~ /actually processed: (\d+)/; return $n // 0; }

sub terminate_some
{
	my ($from, $to) = @_;
	my $done = 0;
	for my $i ($from .. $to)
	{
		my $pid = RedisSync::Compare::worker_stat($node, 'worker_pid');
		if (!$pid)
		{
			$pid = RedisSync::WB::wait_worker($node, timeout => 30) // 0;
		}
		my $r = $node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
		my $new = RedisSync::WB::wait_worker($node, old_pid => $pid, timeout => 30);
		if ($r eq 't' && defined $new) { $done++; }
		else { diag("termination $i: pg_terminate_backend($pid) = $r, new worker " . ($new // 'none')); }
		sleep(0.3 + rand(0.4));
	}
	return $done;
}

my $t0 = time;
my $bench1 = start_pgbench(30);    # runs into the fast stop
sleep 0.5;
my $done = terminate_some(1, $STOP_AFTER);
is($done, $STOP_AFTER, "first $STOP_AFTER terminations, each followed by a new worker");

# the fast stop in the middle of the load (pgbench's clients are terminated)
my $t_stop = time;
$node->stop('fast');
my $stop_secs = time - $t_stop;
$bench1->{h}->finish;
diag(sprintf('pg_ctl stop -m fast took %.2fs; pgbench 1: %d transactions', $stop_secs, txns($bench1)));
cmp_ok(txns($bench1), '>', 0, 'pgbench 1 committed transactions before the stop');
$node->start;
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running after the restart');

my $bench2 = start_pgbench(10);
sleep 0.3;
$done = terminate_some($STOP_AFTER + 1, $KILLS);
is($done, $KILLS - $STOP_AFTER, 'remaining terminations, each followed by a new worker');

$bench2->{h}->finish;
is($? >> 8, 0, 'pgbench 2 exit code 0') or diag(${ $bench2->{err} });
cmp_ok(txns($bench2), '>', 0, 'pgbench 2 committed transactions');
for my $c (@wb_clients)
{
	ok($c->{h}->finish, 'write-behind load client exited 0') or diag(${ $c->{err} });
}
my $bad = 0;
for my $f (glob "$dir/*.out")
{
	eval { RedisSync::WB::check_pipe_output(slurp_file($f), 2 * $WB_CHUNK); 1 }
	  or do { $bad++; diag("$f: $@") };
}
is($bad, 0, 'every redis-cli --pipe chunk: errors 0 and all replies');
diag(sprintf('load phase %.1fs: pgbench %d + %d transactions, %d increments',
	time - $t0, txns($bench1), txns($bench2), $WB_TOTAL));

# flush everything that is left
my $pending = RedisSync::Compare::outbox_depth($node);
is($node->safe_psql('postgres', 'SELECT redis_sync.flush() IS NOT NULL'), 't', 'redis_sync.flush()');
my $delivered = RedisSync::Compare::drain_outbox($node, timeout => 60);
diag("outbox at the end of the load: $pending; delivered by deliver_outbox(): $delivered");
my $dirty_left = RedisSync::WB::scard($redis, 'wb:dirty') + RedisSync::WB::scard($redis, $PROC);
my ($secs, $applied, $calls) = RedisSync::WB::flush_until_clean($node, $redis,
	table => 'wb', dirty => 'wb:dirty', timeout => 60);
ok(defined $secs, 'flush() emptied the dirty and processing sets');
diag(sprintf('write-behind left dirty at the end: %d; flush until clean %.2fs, %d rows, %d calls',
	$dirty_left, $secs // -1, $applied, $calls));

# write-through: cache == table
ok(defined $t->wait_cache_matches($redis, timeout => 30,
		name => 'write-through: cache == table'), 'write-through cache converged');
is(RedisSync::Compare::outbox_depth($node), 0, 'outbox empty');

# write-behind: exact counters, in the table and in Redis
my %want = map { $_ => ($_ <= $WB_PRE ? $WB_BASE : 0) + $incs{$_} } 1 .. $WB_KEYS;
my $table = RedisSync::WB::column_dump($node, 'wb', 'id', 'n');
RedisSync::WB::maps_equal($table, \%want, 'write-behind: every counter = initial + increments');
my $cache = RedisSync::WB::hash_field_dump($redis, 'wb:', 'n');
delete $cache->{$_} for grep { !/^\d+$/ } keys %$cache;    # dirty set, markers
RedisSync::WB::maps_equal($cache, \%want, 'write-behind: every Redis counter = initial + increments');
my $want_sum = $WB_BASE * $WB_PRE + $WB_TOTAL;
is($node->safe_psql('postgres', 'SELECT sum(n) FROM wb'), $want_sum, "sum(n) = $want_sum");
RedisSync::WB::no_dead_letters($node);

# the workers: restarts counted, no crash
my $restarts = RedisSync::Compare::worker_stat($node, 'worker_restarts');
cmp_ok($restarts, '>=', $KILLS - $STOP_AFTER, "worker_restarts = $restarts since the restart");
my @lines = split /\n/, slurp_file($node->logfile);
my @crash = grep { /PANIC|TRAP|was terminated by signal/ } @lines;
is(scalar(@crash), 0, 'no PANIC, TRAP or process terminated by a signal in the log')
  or diag(join "\n", @crash[ 0 .. ($#crash < 9 ? $#crash : 9) ]);
my @fatal = grep { /FATAL:/ && !/terminating connection due to administrator command|the database system is (?:starting up|shutting down)/ } @lines;
is(scalar(@fatal), 0, 'no FATAL other than the clients terminated by the fast stop')
  or diag(join "\n", @fatal[ 0 .. ($#fatal < 9 ? $#fatal : 9) ]);
my $worker_errors = grep { /ERROR:/ } @lines;
my @final = map { /final drain at shutdown applied (\d+) rows/ ? $1 : () } @lines;
diag(sprintf('ERROR lines in the log: %d; final drains at shutdown: %d, %d with rows (%d rows)',
	$worker_errors, scalar(@final), scalar(grep { $_ > 0 } @final), eval { my $s = 0; $s += $_ for @final; $s }));
is(scalar(@final), $KILLS + 1, 'every terminated worker ran its final drain');

$node->stop;
$redis->stop;
done_testing();

# Write-behind under load with crashes.
#
# 4 redis-cli --pipe clients send 200,000 "HINCRBY stats:<id> view_count 1"
# + "SADD stats:dirty <id>" pairs over 5,000 keys (40 increments per key) in
# 5 phases, while the worker drains every 100 ms.  Between phases the
# clients block on a Redis list (BLPOP) so the test can line up a fault with
# the next phase: the phase is released and, as soon as the worker holds
# claimed members in the processing set (claimed, not yet acknowledged), the
# worker is SIGKILLed (phases 2 and 3: the postmaster restarts the cluster)
# or Postgres is stopped with -m immediate and started again (phase 4).
# At the end redis_sync.flush() runs until the dirty and processing sets are
# empty, and every row must equal its Redis hash (and 40).
#
# The table starts with half the rows at 0 and the other half absent
# (insert path); no counters, so values are absolute and Redis starts empty.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time);

my $KEYS    = 5000;
my $CLIENTS = 4;
my $PHASES  = 5;
my $PER_PHASE = 10_000;    # HINCRBYs per client per phase
my $CHUNK     = 1_000;     # HINCRBYs per redis-cli --pipe invocation
my $TOTAL     = $CLIENTS * $PHASES * $PER_PHASE;
my $PER_KEY   = $TOTAL / $KEYS;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'wbload',
	redis      => $redis,
	extra_conf => <<"EOC");
restart_after_crash = on
redis_sync.retry_max_backoff = '1s'
redis_sync.marker_sweep_interval = '500ms'
EOC

$node->safe_psql(
	'postgres', qq{
CREATE TABLE stats (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0);
INSERT INTO stats SELECT g, 0 FROM generate_series(1, $KEYS / 2) g;
SELECT redis_sync.write_behind('stats', key_prefix => 'stats:', flush_interval => '100 ms');
});
is($node->safe_psql('postgres',
		"SELECT dirty_set || ' ' || flush_interval FROM redis_sync.tables WHERE relid = 'stats'::regclass"),
	'stats:dirty 00:00:00.1', 'write_behind configured (dirty set stats:dirty, 100 ms)');
my $PROC = RedisSync::WB::processing_set('stats:dirty');
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

# the load: per client and phase, chunk files of RESP
my $dir = "$PostgreSQL::Test::Utils::tmp_check/wbload";
mkdir $dir or die "$dir: $!";
for my $c (0 .. $CLIENTS - 1)
{
	for my $p (1 .. $PHASES)
	{
		for my $k (0 .. $PER_PHASE / $CHUNK - 1)
		{
			my @cmds;
			for my $j ($k * $CHUNK .. ($k + 1) * $CHUNK - 1)
			{
				# each client covers every key twice per phase, clients overlap
				my $id = (($j + $c * 1250 + $p * 37) % $KEYS) + 1;
				push @cmds, [ 'HINCRBY', "stats:$id", 'view_count', 1 ],
				  [ 'SADD', 'stats:dirty', $id ];
			}
			RedisSync::WB::write_resp("$dir/c${c}_p${p}_k$k.resp", @cmds);
		}
	}
}
my $cli    = RedisSync::Test::redis_cli_bin();
my $port   = $redis->port;
my $chunks = $PER_PHASE / $CHUNK - 1;
my @clients;
for my $c (0 .. $CLIENTS - 1)
{
	my $script = <<"EOS";
set -e
CLI="$cli -h 127.0.0.1 -p $port"
for p in \$(seq 1 $PHASES); do
  if [ \$p -gt 1 ]; then
    \$CLI INCR load:arrived:\$p >/dev/null
    \$CLI BLPOP load:gate:\$p 300 >/dev/null
  fi
  for k in \$(seq 0 $chunks); do
    \$CLI --pipe < $dir/c${c}_p\${p}_k\$k.resp > $dir/c${c}_p\${p}_k\$k.out 2>&1
    sleep 0.01   # pacing, so a phase lasts a while
  done
done
\$CLI INCR load:finished >/dev/null
EOS
	my ($out, $err) = ('', '');
	push @clients,
	  {
		h => IPC::Run::start([ 'bash', '-c', $script ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(600)),
		out => \$out,
		err => \$err
	  };
}
my $t_load = time;

# catch the worker between claim and acknowledgement (best effort)
sub wait_claimed
{
	my $w = RedisSync::Compare::wait_for(sub { RedisSync::WB::scard($redis, $PROC) > 0 }, 10, 0.001);
	note(defined $w
		? sprintf('processing set non-empty after %.3fs', $w)
		: 'processing set stayed empty for 10s');
	return defined $w;
}

my $log_offset = 0;
my %caught;
for my $p (2 .. $PHASES)
{
	ok( defined RedisSync::Compare::wait_for(
			sub { ($redis->cli('GET', "load:arrived:$p") || 0) == $CLIENTS }, 300),
		"all clients finished phase " . ($p - 1));
	$redis->cli('RPUSH', "load:gate:$p", ('go') x $CLIENTS);
	if ($p == 2 || $p == 3)
	{
		my $pid = RedisSync::Compare::worker_stat($node, 'worker_pid');
		$caught{$p} = wait_claimed();
		ok(kill('KILL', $pid), "phase $p: SIGKILL worker $pid");
		my $t0  = time;
		my $new = RedisSync::WB::wait_worker($node, old_pid => $pid, timeout => 60);
		ok(defined $new, "phase $p: cluster restarted, new worker " . ($new // '?'));
		diag(sprintf('phase %d: crash restart took %.2fs', $p, time - $t0));
	}
	elsif ($p == 4)
	{
		$caught{$p} = wait_claimed();
		$node->stop('immediate');
		pass('phase 4: postgres stopped -m immediate');
		$node->start;
		ok(defined RedisSync::WB::wait_worker($node, timeout => 60),
			'phase 4: postgres started, worker running');
	}
}
my $caught = grep { $_ } values %caught;
diag("faults that hit the worker with claimed, unacknowledged members: $caught of 3");

for my $c (@clients)
{
	ok($c->{h}->finish, 'load client exited 0') or diag(${ $c->{err} });
}
my $load_secs = time - $t_load;
is($redis->cli('GET', 'load:finished'), $CLIENTS, 'all clients finished');
my $bad = 0;
for my $f (glob "$dir/*.out")
{
	eval { RedisSync::WB::check_pipe_output(slurp_file($f), 2 * $CHUNK); 1 }
	  or do { $bad++; diag("$f: $@") };
}
is($bad, 0, 'every redis-cli --pipe chunk reported errors: 0 and all replies');

my $log = slurp_file($node->logfile);
my $kills = () = $log =~ /background worker "redis_sync worker" \(PID \d+\) was terminated by signal 9/g;
is($kills, 2, 'postmaster saw two worker SIGKILLs');

# drain everything that is left
my $dirty_left = RedisSync::WB::scard($redis, 'stats:dirty') + RedisSync::WB::scard($redis, $PROC);
my ($secs, $applied, $calls) = RedisSync::WB::flush_until_clean($node, $redis,
	table => 'stats', dirty => 'stats:dirty', timeout => 120);
ok(defined $secs, 'flush() emptied the dirty and processing sets');
diag(sprintf('load: %d HINCRBY+SADD pairs in %.2fs with 3 faults; left dirty at the end: %d; '
	  . 'flush until clean: %.3fs, %d rows, %d calls',
	$TOTAL, $load_secs, $dirty_left, $secs // -1, $applied, $calls));

# every row equals its Redis hash, and the increments add up
my $cache = RedisSync::WB::hash_field_dump($redis, 'stats:', 'view_count');
my $table = RedisSync::WB::column_dump($node, 'stats', 'id', 'view_count');
is(scalar(keys %$table), $KEYS, "table has $KEYS rows");
RedisSync::WB::maps_equal($table, $cache, 'every row equals its Redis hash');
RedisSync::WB::maps_equal($table, { map { $_ => $PER_KEY } 1 .. $KEYS },
	"every row has view_count $PER_KEY");
is($node->safe_psql('postgres', 'SELECT sum(view_count) FROM stats'), $TOTAL, "sum(view_count) = $TOTAL");
RedisSync::WB::no_dead_letters($node);

# drain throughput: with flush_interval '1 h' (after one forced round the
# next scheduled drain is an hour away), one more increment on every key,
# then time one flush()
$node->safe_psql('postgres',
	"SELECT redis_sync.write_behind('stats', key_prefix => 'stats:', flush_interval => '1 h')");
$node->safe_psql('postgres', "SELECT redis_sync.flush('stats')");
RedisSync::WB::write_resp("$dir/all.resp",
	map { ([ 'HINCRBY', "stats:$_", 'view_count', 1 ], [ 'SADD', 'stats:dirty', $_ ]) } 1 .. $KEYS);
RedisSync::WB::pipe_run($redis, "$dir/all.resp", 2 * $KEYS);
is(RedisSync::WB::scard($redis, 'stats:dirty'), $KEYS, "$KEYS keys dirty, none drained yet");
($secs, $applied, $calls) = RedisSync::WB::flush_until_clean($node, $redis,
	table => 'stats', dirty => 'stats:dirty', timeout => 60);
ok(defined $secs, "flush() drained $KEYS dirty keys");
is($applied, $KEYS, "flush() reported $KEYS rows applied");
diag(sprintf('drain throughput: %d rows in %.3fs (%d flush calls) = %.0f rows/s',
	$KEYS, $secs // 0, $calls, $secs ? $KEYS / $secs : 0));
is($node->safe_psql('postgres', 'SELECT sum(view_count) FROM stats'),
	$TOTAL + $KEYS, 'sum(view_count) after one more increment per key');

$node->stop;
done_testing();

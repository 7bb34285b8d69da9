# The background worker is killed with SIGKILL in the middle of delivering
# the outbox.  The postmaster treats that as a crash: every backend is
# terminated, crash recovery runs, and the worker is started again.  No outbox
# entry may be lost (an entry is removed only after Redis confirmed it, in the
# worker's transaction, which the crash aborts) and nothing may be delivered
# stale: the killed worker's pipeline, still sitting in Redis, must not win
# over newer changes committed after the restart.
#
# To catch the worker "while delivering", Redis is paused for writes
# (CLIENT PAUSE ... WRITE): the worker's INFO probe still answers, but its
# delivery scripts hang until command_timeout (10 s here); the test waits
# until pg_stat_activity shows the worker delivering, then kills it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;
use Time::HiRes qw(time);

my $ROWS    = 500;
my $UPDATES = 300;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'wkill',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.command_timeout = '10s'
redis_sync.marker_sweep_interval = '200ms'
redis_sync.retry_max_backoff = '1s'
restart_after_crash = on
EOC

# an async table (every change goes through the outbox) and an eventual one
my $a = RedisSync::Synced::synced_table($node, 'a', with => "delivery => 'async'", rows => $ROWS);
my $e = RedisSync::Synced::synced_table($node, 'e', with => "consistency => 'eventual'", rows => $ROWS);
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'initial async rows delivered');
$a->cache_matches($redis, name => 'async table cached');
$e->cache_matches($redis, name => 'eventual table cached');

# queue $UPDATES single-row changes while the worker is held
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
my $s = RedisSync::Test::session($node);
my $r = $s->query(join("\n",
		map { "UPDATE a SET v = v + 1000, note = 'round1' WHERE id = $_;" } 1 .. $UPDATES));
is($r->{err}, '', "$UPDATES async UPDATEs committed");
$s->quit;
my $queued = RedisSync::Compare::outbox_depth($node);
is($queued, $UPDATES, "outbox holds $UPDATES entries");

# Redis refuses writes for a while; let the worker go and catch it delivering
is($redis->cli('CLIENT', 'PAUSE', '60000', 'WRITE'), 'OK', 'Redis paused for writes');
my $paused = 1;
END { $redis->cli('CLIENT', 'UNPAUSE') if $paused && $redis && $redis->running; }
my $pid0 = RedisSync::Compare::worker_stat($node, 'worker_pid');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE pid = $pid0 AND state = 'active' AND query = 'redis_sync: delivering the outbox'}),
	"worker $pid0 is delivering (stuck on the paused Redis)");
my $blocked = $redis->cli('CLIENT', 'LIST');
note("Redis clients:\n$blocked");
like($blocked, qr/cmd=(evalsha|eval)\b/i, 'a delivery script is blocked in Redis');
is(RedisSync::Compare::outbox_depth($node), $queued, 'outbox still full while the worker waits');

# SIGKILL the worker: the postmaster restarts everything
ok(kill('KILL', $pid0), "SIGKILL worker $pid0");
my $t0 = time;
ok( defined RedisSync::Compare::wait_for(
		sub {
			my ($ret, $out) = $node->psql('postgres',
				'SELECT worker_running AND worker_pid <> ' . $pid0 . ' FROM redis_sync.worker_stats');
			return $ret == 0 && $out eq 't';
		},
		60,
		0.1),
	'node accepts connections again and a new worker runs');
diag(sprintf('crash restart until a new worker runs: %.2fs', time - $t0));
my $log = slurp_file($node->logfile);
like($log, qr/background worker "redis_sync worker" \(PID $pid0\) was terminated by signal 9/,
	'postmaster saw the worker die of SIGKILL');
like($log, qr/all server processes terminated; reinitializing/, 'crash recovery ran');
is(RedisSync::Compare::outbox_depth($node), $queued,
	'no outbox entry lost in the crash');
is( $node->safe_psql('postgres',
		"SELECT count(DISTINCT redis_key) FROM redis_sync.outbox WHERE redis_key LIKE 'a:%'"),
	$UPDATES,
	'... every changed key still queued');

# newer changes to the same rows after the restart, Redis still paused for
# writes: they must win over the killed worker's pipeline
$s = RedisSync::Test::session($node);
$r = $s->query(join("\n",
		map { "UPDATE a SET v = v + 1, note = 'round2' WHERE id = $_;" }
		  grep { $_ % 2 == 0 } 1 .. $UPDATES));
is($r->{err}, '', 'second round of async UPDATEs committed after the restart');
$r = $s->query("SET redis_sync.command_timeout = '500ms';\n"
	  . "UPDATE e SET v = v + 7, note = 'e-after-crash' WHERE id <= 50");
is($r->{err}, '', 'eventual UPDATE committed (pushed later, Redis paused for writes)');

is($redis->cli('CLIENT', 'UNPAUSE'), 'OK', 'Redis writes resumed');
$paused = 0;
$t0 = time;
my $w = RedisSync::Compare::wait_outbox_empty($node, 60);
ok(defined $w, 'outbox drained after Redis resumed');
diag(sprintf('drain after the crash and Redis resume: %.2fs', time - $t0)) if defined $w;

$a->wait_cache_matches($redis,
	timeout => 10,
	name    => 'async table: cache == table');
$e->wait_cache_matches($redis,
	timeout => 10,
	name    => 'eventual table: cache == table');

# every updated row's latest value is in Redis
my $missing = 0;
for my $id (1 .. $UPDATES)
{
	my $want = $id % 2 == 0 ? 'round2' : 'round1';
	my $got = $redis->cli('HGET', "a:$id", 'note');
	$missing++ if $got ne $want;
}
is($missing, 0, "all $UPDATES updated rows hold their latest value in Redis");
is(RedisSync::Compare::worker_stat($node, 'circuit'), 'closed', 'circuit closed');

$s->quit;
$node->stop;
done_testing();

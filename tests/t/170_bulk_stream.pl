# A bulk push streams its chunks: each apply call is sent as soon as it is
# encoded, and every reply is read at the end (publish.c, redis_client.c
# redis_pipeline_stream).  With redis_sync.chunk_size = 100, a 20,000-row
# transaction is 200 calls, so most of a push is on the wire (or applied)
# before the last chunk is encoded.  Faults while chunks are out must end as
# they did before streaming: an eventual table commits and queues the
# changes, a strict table rolls back; and once Redis answers, Redis holds
# the committed rows, never the rolled-back ones.
#   - keys moved between rows in one transaction (each key once per push)
#   - Redis paused (CLIENT PAUSE) during the push: command_timeout expires
#   - the push cancelled while Redis is paused: the abort does not wait on
#     Redis again (chunks already sent are left to the in-flight markers)
#   - Redis stopped (SIGSTOP) during the push, then killed and restarted
#   - a chunk refused for memory (maxmemory, noeviction)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;
use Time::HiRes qw(sleep);

my $ROWS = 20_000;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'bulk_stream',
	redis      => $redis,
	extra_conf => "redis_sync.chunk_size = 100\n"
	  . "redis_sync.command_timeout = '1s'\n"
	  . "redis_sync.marker_sweep_interval = '1s'\n");

my $fill = "SELECT g, g, 'n' || g FROM generate_series(1, $ROWS) g";
my $e = RedisSync::Synced::synced_table($node, 'e', fill => $fill,
	with => "consistency => 'eventual'");
my $st = RedisSync::Synced::synced_table($node, 's', fill => $fill,
	with => "consistency => 'strict'");
$node->safe_psql('postgres', 'SELECT redis_sync.warm(relid) FROM redis_sync.tables');
$e->wait_cache_matches($redis, 'start: e cached');
$st->wait_cache_matches($redis, 'start: s cached');

my $s = RedisSync::Test::session($node);

sub stats
{
	my $r = $s->query('SELECT round_trips, pushed, queued FROM redis_sync.session_stats()');
	die "session_stats failed: $r->{err}" if $r->{err} ne '';
	my ($rt, $pushed, $queued) = split /\|/, $r->{out};
	return { round_trips => $rt, pushed => $pushed, queued => $queued };
}

my $snapshot = sub {
	return $node->safe_psql('postgres', 'SELECT md5(string_agg(s::text, \',\' ORDER BY id)) FROM s');
};

# --- 1. keys moved between rows: every key deleted and written again in one
# transaction (id -> ROWS + 1 - id), 200 chunks, one round trip
my $st0 = stats();
my $r = $s->query("BEGIN;\nUPDATE e SET id = -id;\n"
	  . "UPDATE e SET id = $ROWS + 1 + id, v = v + 1;\nCOMMIT;");
is($r->{err}, '', 'permuting the keys of 20,000 rows commits');
my $st1 = stats();
is($st1->{round_trips} - $st0->{round_trips}, 1, 'the push of 200 chunks took one round trip');
# e:1..e:N deleted then written, e:-1..e:-N written then deleted: each once
is($st1->{pushed} - $st0->{pushed}, 2 * $ROWS, 'each of the 40,000 keys pushed once');
is($st1->{queued} - $st0->{queued}, 0, 'nothing queued');
$e->cache_matches($redis, 'after the permutation: cache == table');
is($redis->cli('HGET', 'e:1', 'note'), "n$ROWS", 'e:1 holds the row that moved there');

# --- 2. Redis paused during the push: it times out (command_timeout 1s)
my $before = $snapshot->();
is($redis->pause_ms(3000), 'OK', 'Redis paused for 3s');
$r = $s->query('UPDATE s SET v = v + 1000');
like($r->{err}, qr/could not push changes to Redis/, 'strict UPDATE during the pause fails');
is($snapshot->(), $before, 'strict: table s unchanged');
my $st2 = stats();
$r = $s->query('UPDATE e SET v = v + 1000');
is($r->{err}, '', 'eventual UPDATE during the pause commits');
my $st3 = stats();
is($st3->{queued} - $st2->{queued}, $ROWS, 'eventual: its changes were queued in the outbox');
# the pushes that timed out may land after the pause: the worker repairs the
# strict one from its in-flight markers, the outbox brings e level
$st->wait_cache_matches($redis, name => 'after the pause: s cache == committed table', timeout => 60);
RedisSync::Compare::drain_outbox($node);
$e->wait_cache_matches($redis, name => 'after the pause: e cache == table', timeout => 60);

# --- 2b. the push cancelled while Redis is paused: the abort leaves the
# chunks already sent to the in-flight markers (as for a push not streamed)
# instead of waiting on the paused Redis again, and the worker repairs what
# lands after the pause.  The session connects to Redis first (a one-row
# UPDATE), then waits on an advisory lock this test holds; Redis is paused
# while it waits, and the lock released: its UPDATE then meets the paused
# Redis, however slowly the machine started the session (a pause issued
# before the session had connected caught its first UPDATE instead).
my $lock = RedisSync::Test::session($node);
$lock->query('SELECT pg_advisory_lock(170)');
my $c = RedisSync::Test::session($node);
$c->query("SET redis_sync.command_timeout = '60s'; SET redis_sync.connect_timeout = '60s'");
is($c->query('UPDATE e SET v = v + 1 WHERE id = 1')->{err}, '', 'the session is connected to Redis');
my $cpid = $c->query('SELECT pg_backend_pid()')->{out};
$c->start_query("SELECT pg_advisory_lock(170);\nUPDATE e SET v = v + 5000");
ok(defined RedisSync::Compare::wait_for(
		sub {
			$node->safe_psql('postgres',
				"SELECT wait_event FROM pg_stat_activity WHERE pid = $cpid") eq 'advisory';
		},
		30),
	'the session waits for the lock');
is($redis->pause_ms(5000), 'OK', 'Redis paused for 5s');
$lock->query('SELECT pg_advisory_unlock(170)');
my $in_push = RedisSync::Compare::wait_for(
	sub {
		$node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE pid = $cpid "
			  . "AND query LIKE 'UPDATE e SET v = v + 5000%' AND wait_event_type = 'Extension'") eq '1';
	},
	30, 0.01);
ok(defined $in_push, 'the UPDATE waits on the paused Redis');
my $t0 = Time::HiRes::time();
$node->safe_psql('postgres', "SELECT pg_cancel_backend($cpid)");
my $cr = $c->finish_query;
my $took = Time::HiRes::time() - $t0;
like($cr->{err}, qr/canceling statement due to user request/, 'the UPDATE is cancelled in its push');
cmp_ok($took, '<', 3, 'the abort does not wait for the pause to end') or diag("took ${took}s");
is($redis->cli('PING'), 'PONG', 'the pause is over');
$c->quit;
$lock->quit;
$e->wait_cache_matches($redis,
	name => 'after the cancelled push: e cache == committed table', timeout => 120);

# --- 3. Redis stopped during the push, then killed and restarted empty
my $pid = $redis->{pid};
ok(kill('STOP', $pid), 'Redis stopped (SIGSTOP)');
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'),
		'-c', "SET redis_sync.command_timeout = '60s'", '-c', 'UPDATE e SET v = v + 1' ],
	'>', \$out, '2>', \$err);
my $waiting = RedisSync::Compare::wait_for(
	sub {
		$node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE query = 'UPDATE e SET v = v + 1' "
			  . "AND wait_event_type = 'Extension' AND pid <> pg_backend_pid()") eq '1';
	},
	30, 0.01);
ok(defined $waiting, 'the UPDATE waits on Redis mid-push');
ok(kill('KILL', $pid), 'Redis killed');
$h->finish;
is($err, '', 'eventual UPDATE commits when Redis dies mid-push');
$redis->{pid} = undef;
$redis->start;
RedisSync::Compare::drain_outbox($node);
$e->wait_cache_matches($redis,
	name => 'after the kill: the outbox brings e level with the table', timeout => 60);

# --- 4. a chunk refused for memory: strict INSERT of new keys
$node->safe_psql('postgres', "SELECT redis_sync.warm('s')");
$st->wait_cache_matches($redis, 's cached again after the restart');
my ($mem) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$redis->cli('CONFIG', 'SET', 'maxmemory', $mem + 512 * 1024);
$before = $snapshot->();
$r = $s->query("INSERT INTO s SELECT g, g, 'big ' || repeat('x', 200) FROM generate_series($ROWS + 1, 3 * $ROWS) g");
like($r->{err}, qr/could not push changes to Redis/, 'strict INSERT over maxmemory fails');
like($r->{err}, qr/OOM/, 'the error names the OOM refusal');
is($snapshot->(), $before, 'strict: table s unchanged');
my $stray = 0;
for my $id ($ROWS + 1, $ROWS + 50, 2 * $ROWS, 3 * $ROWS)
{
	$stray++ if $redis->cli('EXISTS', "s:$id") ne '0';
}
is($stray, 0, 'no key of the rolled-back INSERT is left in Redis (abort repair)');
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
$st->wait_cache_matches($redis, name => 'after the OOM: s cache == committed table', timeout => 60);

$s->quit;
$node->stop;
$redis->stop;

done_testing();

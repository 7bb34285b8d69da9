# A bulk push streams its chunks and, when Redis takes them slower than the
# backend encodes them, waits for the socket instead of holding the rest of
# the push in memory (redis_stream.c, STREAM_BACKLOG_BYTES): the pipeline's
# memory stays bounded by a few chunks, whatever the size of the push.
# Redis is stopped (SIGSTOP) during pushes of about 40 MB:
#   - the pipeline's memory, logged by pg_log_backend_memory_contexts() while
#     the push waits, is a fraction of the push (all of it before: the wait
#     came only after the last chunk was encoded)
#   - cancelled while it waits: the transaction rolls back, and once Redis
#     runs again the chunks that landed are repaired (in-flight markers)
#   - command_timeout expiring while it waits: an eventual table commits
#     and queues its changes, a strict table rolls back
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;
use Time::HiRes ();

my $ROWS  = 40_000;
my $PUSH  = $ROWS * 1000;    # bytes of note alone in one push
my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'stream_backlog',
	redis      => $redis,
	extra_conf => "redis_sync.max_buffer_bytes = '512MB'\n"
	  . "redis_sync.marker_sweep_interval = '1s'\n");

my $fill = "SELECT g, g, repeat(chr(97 + g % 26), 1000) FROM generate_series(1, $ROWS) g";
my $e = RedisSync::Synced::synced_table($node, 'e', fill => $fill,
	with => "consistency => 'eventual', warm => false");
my $st = RedisSync::Synced::synced_table($node, 's', fill => $fill,
	with => "consistency => 'strict', warm => false");
$node->safe_psql('postgres', 'SELECT redis_sync.warm(relid) FROM redis_sync.tables');
$e->wait_cache_matches($redis, name => 'start: e cached', timeout => 120);
$st->wait_cache_matches($redis, name => 'start: s cached', timeout => 120);

my $snapshot = sub {
	my $t = shift;
	return $node->safe_psql('postgres', "SELECT md5(string_agg(v::text, ',' ORDER BY id)) FROM $t");
};

# a session connected to Redis (a one-row UPDATE), its pid
sub connected_session
{
	my ($timeout) = @_;
	my $c = RedisSync::Test::session($node);
	$c->query("SET redis_sync.command_timeout = '$timeout'; SET redis_sync.connect_timeout = '60s'");
	is($c->query('UPDATE e SET v = v + 1 WHERE id = 1')->{err}, '', "a session connected to Redis (command_timeout $timeout)");
	return ($c, $c->query('SELECT pg_backend_pid()')->{out});
}

# wait until backend $pid runs $like and waits on Redis
sub waits_on_redis
{
	my ($pid, $like) = @_;
	return RedisSync::Compare::wait_for(
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid "
				  . "AND query LIKE '$like' AND wait_event_type = 'Extension'") eq '1';
		},
		60, 0.01);
}

# --- 1. the push waits with a bounded buffer; cancelled, it rolls back
my ($c, $cpid) = connected_session('120s');
my $before = $snapshot->('e');
my $rpid = $redis->{pid};
ok(kill('STOP', $rpid), 'Redis stopped (SIGSTOP)');
$c->start_query('UPDATE e SET v = v + 1');
ok(defined waits_on_redis($cpid, 'UPDATE e SET v = v + 1%'), 'the push waits on the stopped Redis');

my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($cpid)");
$node->wait_for_log(qr/redis_sync pipeline: \d+ total/, $log_offset);
my ($pipe) = slurp_file($node->logfile, $log_offset) =~ /redis_sync pipeline: (\d+) total/;
note("pipeline memory while the push waits: $pipe bytes, push of at least $PUSH");
cmp_ok($pipe, '<', $PUSH / 4, 'the waiting push holds under a quarter of itself in memory');

my $t0 = Time::HiRes::time();
$node->safe_psql('postgres', "SELECT pg_cancel_backend($cpid)");
my $cr = $c->finish_query;
my $took = Time::HiRes::time() - $t0;
like($cr->{err}, qr/canceling statement due to user request/, 'the push is cancelled while it waits');
# the chunks sent are left to the in-flight markers: the abort does not try
# the stopped Redis again (connect_timeout 60s would hold it)
cmp_ok($took, '<', 10, 'the abort does not wait on the stopped Redis') or diag("took ${took}s");
unlike($cr->{err}, qr/could not restore/, 'no repair was tried at the abort');
ok(kill('CONT', $rpid), 'Redis runs again (SIGCONT)');
is($snapshot->('e'), $before, 'the cancelled UPDATE rolled back');
$e->wait_cache_matches($redis,
	name => 'after the cancel: the chunks that landed are repaired, e cache == table', timeout => 120);
$c->quit;

# --- 2. command_timeout expires while the push waits
($c, $cpid) = connected_session('2s');
ok(kill('STOP', $rpid), 'Redis stopped again');
my $r = $c->query('UPDATE e SET v = v + 10');
is($r->{err}, '', 'eventual: the UPDATE commits when its push times out');
my $sb = $snapshot->('s');
$r = $c->query('UPDATE s SET v = v + 10');
like($r->{err}, qr/could not push changes to Redis/, 'strict: the UPDATE fails when its push times out');
ok(kill('CONT', $rpid), 'Redis runs again');
is($snapshot->('s'), $sb, 'strict: table s unchanged');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), '>', 0,
	'eventual: its changes went to the outbox');
RedisSync::Compare::drain_outbox($node, timeout => 120);
$e->wait_cache_matches($redis, name => 'after the timeout: e cache == table', timeout => 120);
$st->wait_cache_matches($redis, name => 'after the timeout: s cache == committed table', timeout => 120);

# --- 3. the same push with Redis running: applied whole
$r = $c->query('UPDATE e SET v = v + 100');
is($r->{err}, '', 'a push of about 40 MB with Redis running commits');
$e->cache_matches($redis, 'and Redis holds every row of it');
$c->quit;

$node->stop;
$redis->stop;

done_testing();

# Bulk write-through: a 100,000-row INSERT and a 100,000-row UPDATE, each in
# one transaction, must reach Redis completely in one round trip (pipelined,
# chunked script calls; the INSERT, the first push, may take a second for
# NOSCRIPT).  A 50,000-row
# UPDATE with redis_sync.max_buffer_bytes = 1MB overflows the in-memory buffer
# and must go through redis_sync.outbox; deliver_outbox() then brings Redis
# level with the table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;

my $ROWS = 100_000;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('bulk', redis => $redis);

my $b = RedisSync::Synced::synced_table($node, 'b');

my $s = RedisSync::Test::session($node);

sub stats
{
	my $r = $s->query(
		'SELECT round_trips, pushed, queued FROM redis_sync.session_stats()');
	die "session_stats failed: $r->{err}" if $r->{err} ne '';
	my ($rt, $pushed, $queued) = split /\|/, $r->{out};
	return { round_trips => $rt, pushed => $pushed, queued => $queued };
}

sub outbox_seq
{
	return $node->safe_psql('postgres',
		'SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM redis_sync.outbox_id_seq');
}

# --- INSERT of 100,000 rows in one statement
my $st0 = stats();
my $r = $s->query(
	"INSERT INTO b SELECT g, g, 'n' || g FROM generate_series(1, $ROWS) g");
is($r->{err}, '', "INSERT of $ROWS rows commits");
my $st1 = stats();
diag(sprintf('INSERT %d rows: %.2fs, %d round trips, %d keys pushed',
	$ROWS, $r->{elapsed}, $st1->{round_trips} - $st0->{round_trips},
	$st1->{pushed} - $st0->{pushed}));
# the first push to this Redis: EVALSHA meets NOSCRIPT, and the chunks are
# resent as EVAL in a second round trip
cmp_ok($st1->{round_trips} - $st0->{round_trips}, '<=', 2,
	'INSERT: at most 2 round trips (one more for NOSCRIPT)');
is($st1->{pushed} - $st0->{pushed}, $ROWS, "INSERT: $ROWS keys pushed");
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	'0', 'INSERT: nothing queued in the outbox');
$b->cache_matches($redis,
	name => 'after the bulk INSERT: cache == table');

# --- UPDATE of all rows in one statement
$r = $s->query(q{UPDATE b SET v = v * 2, note = CASE WHEN id % 10 = 0 THEN NULL ELSE 'u' || id END});
is($r->{err}, '', "UPDATE of $ROWS rows commits");
my $st2 = stats();
diag(sprintf('UPDATE %d rows: %.2fs, %d round trips, %d keys pushed',
	$ROWS, $r->{elapsed}, $st2->{round_trips} - $st1->{round_trips},
	$st2->{pushed} - $st1->{pushed}));
is($st2->{round_trips} - $st1->{round_trips}, 1,
	'UPDATE: 1 round trip (100 chunks, pipelined)');
is($st2->{pushed} - $st1->{pushed}, $ROWS, "UPDATE: $ROWS keys pushed");
is($redis->cli('HGET', 'b:12345', 'v'), '24690', 'spot check: b:12345 v doubled');
is($redis->cli('HEXISTS', 'b:12340', 'note'), '0',
	'spot check: NULL note removed the field');
$b->cache_matches($redis,
	name => 'after the bulk UPDATE: all hashes updated');

# --- a transaction bigger than max_buffer_bytes goes through the outbox
my $seq0 = outbox_seq();
$r = $s->query(
	"SET redis_sync.max_buffer_bytes = '1MB';\n"
	  . "UPDATE b SET v = v + 1 WHERE id <= 50000;\n"
	  . "SELECT count(*) FROM redis_sync.outbox;");
is($r->{err}, '', '50,000-row UPDATE with max_buffer_bytes = 1MB commits');
my $in_outbox = $r->{out};
my $st3 = stats();
# the worker may already be delivering, so count what was queued, not what is left
is($st3->{queued} - $st2->{queued}, 50000, 'all 50,000 changes were queued in the outbox');
is($st3->{pushed} - $st2->{pushed}, 0, 'none was pushed at commit');
diag(sprintf('overflowing UPDATE: %.2fs, outbox count after commit %d, '
	  . 'outbox ids used %d, session_stats().queued grew by %d',
	$r->{elapsed}, $in_outbox, outbox_seq() - $seq0,
	$st3->{queued} - $st2->{queued}));
cmp_ok(outbox_seq() - $seq0, '>=', 50000,
	'every changed row was written to the outbox');
$s->query('RESET redis_sync.max_buffer_bytes');

my $delivered = RedisSync::Compare::drain_outbox($node);
note("deliver_outbox() delivered $delivered entries");
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	'0', 'outbox drained');
is($redis->cli('HGET', 'b:1', 'v'), '3', 'spot check: b:1 after delivery');
$b->cache_matches($redis,
	name => 'after the overflowing UPDATE and delivery: cache == table');

# the comparer itself must see a wrong value, a missing key and a stray key
$redis->cli('HSET', 'b:1', 'v', '-1');
$redis->cli('DEL', 'b:2');
$redis->cli('HSET', 'b:999999', 'id', '999999');
my ($diffs) = $b->diff($redis);
is(scalar(@$diffs), 3, 'comparer self-check: 3 planted differences found')
  or diag(join("\n", @$diffs[0 .. ($#$diffs < 9 ? $#$diffs : 9)]));

$s->quit;
$node->stop;
$redis->stop;

done_testing();

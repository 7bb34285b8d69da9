# Versions must grow across a crash that loses WAL.
#
# A push happens at pre-commit, before the commit record is flushed.  When
# the server crashes then (here: redis_sync.debug_crash_after_push makes the
# backend PANIC right after its push), the WAL not yet written is lost, and
# after crash recovery the WAL insert position restarts BELOW the position
# the crashed transaction's version was taken at.  Versions made of the
# timeline and the insert position alone (0.2 before the epoch) were then
# lower than the uncommitted value's version in Redis: the in-flight marker
# repair and every later write of those keys were fenced out, and Redis kept
# a value that never committed.  Versions now carry the server epoch
# (epoch.c), which grows at each start and crash restart.
#
# To lose WAL for sure, the crashing transaction writes 20 MB of WAL
# (transactional logical messages: no buffers dirtied, nothing flushed)
# that stays in a 64 MB wal_buffers; the WAL writer is stopped (SIGSTOP; the
# postmaster SIGKILLs it during the crash restart) and nothing else writes.
#
# Also: the epoch file, the version format, and 0.1-format (24 hex digit)
# versions in Redis and in the outbox always lose against new writes.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'lostwal',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.marker_sweep_interval = '200ms'
restart_after_crash = on
wal_buffers = '64MB'
wal_writer_delay = '10s'
wal_writer_flush_after = '1GB'
bgwriter_lru_maxpages = 0
autovacuum = off
checkpoint_timeout = '1h'
max_wal_size = '4GB'
EOC

RedisSync::Test::skip_unless_crash_injection($node);
my ($ret, $out, $err);

my $epoch_file = $node->data_dir . '/redis_sync.epoch';
sub epoch_of_file { return 0 unless -f $epoch_file; my $s = slurp_file($epoch_file); chomp $s; return $s; }

my $t = RedisSync::Synced::synced_table($node, 'u',
	fill => "SELECT g, g, 'u' || g FROM generate_series(1, 20) g");
$t->cache_matches($redis, name => 'table cached');

# the version format: timeline, epoch, WAL position (32 hex digits)
ok(-f $epoch_file, 'the epoch file exists in the data directory');
my $epoch1 = epoch_of_file();
like($epoch1, qr/^\d+$/, "epoch $epoch1");
cmp_ok($epoch1, '>=', time - 3600, '... at least the start time (seconds since 1970)');
my $vkey = $node->safe_psql('postgres', "SELECT redis_sync.version_key('u:1')");
my $v1 = $redis->cli('GET', $vkey);
like($v1, qr/^[0-9A-F]{32}$/, "version of u:1 is 32 hex digits ($v1)");
is(substr($v1, 8, 8), sprintf('%08X', $epoch1), '... its digits 9-16 are the epoch');

# ---------------------------------------------------------------------------
# the crash that loses WAL
my $ww = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'");
like($ww, qr/^\d+$/, "walwriter pid $ww");
my $log_offset = -s $node->logfile;
kill 'STOP', $ww;
($ret, $out, $err) = $node->psql(
	'postgres', q{
SET redis_sync.debug_crash_after_push = on;
BEGIN;
SELECT count(pg_logical_emit_message(true, 'fill', repeat('x', 1024 * 1024)))
  FROM generate_series(1, 20);
UPDATE u SET v = v + 1000, note = 'crashed' WHERE id <= 10;
COMMIT;
});
isnt($ret, 0, 'the crashing COMMIT does not report success');
my $crashed = $redis->cli('GET', $vkey);
is($redis->cli('HGET', 'u:1', 'note'), 'crashed', 'Redis got the uncommitted value (pushed at pre-commit)');
ok(RedisSync::Test::wait_crash_recovered($node),
	'node back after crash recovery, worker running');
like(substr(slurp_file($node->logfile), $log_offset),
	qr/all server processes terminated; reinitializing/, 'crash recovery ran');
is($node->safe_psql('postgres', "SELECT count(*) FROM u WHERE note = 'crashed'"),
	'0', 'the crashed transaction rolled back');

# the precondition of the bug: the WAL position is now below the position in
# the uncommitted value's version (24 digits: 0.1 layout, 32: with epoch)
my $pos_hex = length($crashed) == 32 ? substr($crashed, 16) : substr($crashed, 8);
my $lsn_now = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
my ($hi, $lo) = split m{/}, $lsn_now;
my $now_hex = sprintf('%08X%08X', hex($hi), hex($lo));
note("pushed at $pos_hex, insert position after recovery $now_hex");
ok($now_hex lt $pos_hex, 'WAL was lost: the insert position restarted below the pushed version');

my $epoch2 = epoch_of_file();
cmp_ok($epoch2, '>', $epoch1, "the crash restart advanced the epoch ($epoch1 -> $epoch2)");

# the marker repair puts the committed state back
$t->wait_cache_matches($redis, timeout => 30,
	name => 'cache == table after the marker repair');
is($redis->cli('HGET', 'u:1', 'note'), 'u1', 'u:1 holds the committed value again');
cmp_ok($redis->cli('GET', $vkey), 'gt', $crashed, '... with a version above the crashed one');

# new writes of those keys are applied
$node->safe_psql('postgres', "UPDATE u SET note = 'after' WHERE id <= 5");
$t->cache_matches($redis, name => 'cache == table after new writes of the crashed keys');
is($redis->cli('HGET', 'u:3', 'note'), 'after', 'u:3 updated');

# ---------------------------------------------------------------------------
# a clean restart advances the epoch too
$node->restart;
my $epoch3 = epoch_of_file();
cmp_ok($epoch3, '>', $epoch2, "a restart advanced the epoch ($epoch2 -> $epoch3)");
my $before = $redis->cli('GET', $vkey);
$node->safe_psql('postgres', "UPDATE u SET note = 'restarted' WHERE id = 1");
my $after = $redis->cli('GET', $vkey);
is(substr($after, 8, 8), sprintf('%08X', $epoch3), 'the new version carries the new epoch');
cmp_ok($after, 'gt', $before, '... and is above the old one');
is($redis->cli('HGET', 'u:1', 'note'), 'restarted', 'u:1 updated');

# ---------------------------------------------------------------------------
# 0.1-format versions (24 hex digits, no epoch) always lose to new writes,
# whose epoch (>= the start time in seconds, 0x6...) faces the upper 32 bits
# of the old WAL position: one in Redis at 4 PB of WAL ...
my $vkey2 = $node->safe_psql('postgres', "SELECT redis_sync.version_key('u:2')");
$redis->cli('SET', $vkey2, '00000001000FFFFFFFFFFFFF');
$node->safe_psql('postgres', "UPDATE u SET note = 'over old' WHERE id = 2");
is($redis->cli('HGET', 'u:2', 'note'), 'over old', 'a new write replaces a key with a 0.1 version');
like($redis->cli('GET', $vkey2), qr/^[0-9A-F]{32}$/, '... and stores a new version');

# ... and a late outbox entry written by 0.1
$node->safe_psql('postgres', q{
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
VALUES ('u'::regclass, 'u:4', 'H', '{"id": "4", "v": "4", "note": "stale"}', '00000001000FFFFFFFFFFFFF');
});
ok( defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'the 0.1 outbox entry was delivered');
is($redis->cli('HGET', 'u:4', 'note'), 'after', 'it lost against the newer value');
$t->cache_matches($redis, name => 'cache == table at the end');

$node->stop;
done_testing();

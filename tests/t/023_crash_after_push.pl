# A backend dies right after its pre-commit push reached Redis and before its
# commit record was written.  Fault injection: the superuser-only setting
# redis_sync.debug_crash_after_push (for testing only) makes the backend
# PANIC right after a successful pre-commit push; the postmaster restarts the
# cluster and crash recovery rolls the transaction back.  Redis now holds
# values that were never committed.  The push also wrote an in-flight marker
# naming the transaction; the worker's marker sweep (every 200 ms here) sees
# that the transaction did not commit and pushes the committed state of its
# rows again, so cache == table (the crashed transaction's values are gone
# from Redis, deleted rows are back, inserted rows are gone).
#
# The crashed transaction's xid was never made durable (its WAL was not
# flushed), so after crash recovery the server may hand the same xid to a new
# transaction.  The test commits transactions until the xid counter has
# passed the crashed xid, so a sweep that only asks "did xid X commit?" would
# wrongly take the marker for a committed transaction's.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'crashpush',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.marker_sweep_interval = '200ms'
restart_after_crash = on
EOC

my $out = RedisSync::Test::skip_unless_crash_injection($node);
my ($ret, $err);
is($out, 'off', 'redis_sync.debug_crash_after_push exists and is off by default');

my $e = RedisSync::Synced::synced_table($node, 'e', with => "consistency => 'eventual'",
	fill => "SELECT g, g, 'e' || g FROM generate_series(1, 100) g");
my $st = RedisSync::Synced::synced_table($node, 's', with => "consistency => 'strict'",
	fill => "SELECT g, g, 's' || g FROM generate_series(1, 20) g");
$node->safe_psql('postgres', q{
CREATE ROLE plain LOGIN;
GRANT USAGE ON SCHEMA redis_sync TO plain;
});
$e->cache_matches($redis, name => 'eventual table cached');
$st->cache_matches($redis, name => 'strict table cached');

# superuser only
($ret, $out, $err) = $node->psql('postgres',
	'SET redis_sync.debug_crash_after_push = on',
	extra_params => [ '-U', 'plain' ]);
isnt($ret, 0, 'a non-superuser cannot set debug_crash_after_push');
like($err, qr/permission denied to set parameter "redis_sync.debug_crash_after_push"/,
	'... permission denied');

# a transaction that reaches Redis and then crashes before its commit record
my $before_e = $node->safe_psql('postgres', 'SELECT id, v, note FROM e ORDER BY id');
my $before_s = $node->safe_psql('postgres', 'SELECT id, v, note FROM s ORDER BY id');
my $log_offset = -s $node->logfile;
($ret, $out, $err) = $node->psql(
	'postgres', q{
SET redis_sync.debug_crash_after_push = on;
BEGIN;
SELECT 'xid=' || pg_current_xact_id();
UPDATE e SET v = v + 1000, note = 'crashed' WHERE id <= 50;
DELETE FROM e WHERE id > 90;
INSERT INTO e SELECT g, g, 'crashed' FROM generate_series(101, 110) g;
UPDATE s SET v = -v, note = 'crashed' WHERE id <= 10;
COMMIT;
});
isnt($ret, 0, 'the crashing COMMIT does not report success');
note("psql: $err");
my ($crashed_xid) = $out =~ /xid=(\d+)/;
ok(defined $crashed_xid, "crashed transaction's xid: " . ($crashed_xid // '?'));
my $t0 = time;
ok(RedisSync::Test::wait_crash_recovered($node),
	'node back after crash recovery, worker running');
my $log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/PANIC/, 'the backend PANICked (fault injection)');
like($log, qr/all server processes terminated; reinitializing/, 'crash recovery ran');

is($node->safe_psql('postgres', 'SELECT id, v, note FROM e ORDER BY id'),
	$before_e, 'crashed transaction rolled back: table e unchanged');
is($node->safe_psql('postgres', 'SELECT id, v, note FROM s ORDER BY id'),
	$before_s, '... table s unchanged');

# new transactions commit, past the crashed xid (which may be reused)
my $xid = 0;
my $guard = 0;
my @xids;
while ($xid <= ($crashed_xid // 0) && $guard++ < 1000)
{
	$xid = $node->safe_psql('postgres', 'SELECT pg_current_xact_id()');
	push @xids, $xid;
}
note("xids after the restart: @xids");
diag("xid $crashed_xid of the crashed transaction was given to a new, committed transaction")
  if defined $crashed_xid && grep { $_ == $crashed_xid } @xids;
cmp_ok($xid, '>', $crashed_xid // 0, "committed transactions up to xid $xid");
note('xid ' . ($crashed_xid // '?') . ' after the crash: '
	  . $node->safe_psql('postgres', 'SELECT pg_xact_status(\'' . ($crashed_xid // 0) . '\'::xid8)'));

# the sweep repairs the keys the crashed transaction pushed
my $w = $e->wait_cache_matches($redis,
	timeout => 30,
	name    => 'eventual table: cache == table after the repair');
$st->wait_cache_matches($redis,
	timeout => 30,
	name    => 'strict table: cache == table after the repair');
diag(sprintf('crash to repaired cache: %.2fs', time - $t0));
ok( defined RedisSync::Compare::wait_for(
		sub {
			substr(slurp_file($node->logfile), $log_offset) =~
			  /repaired (\d+) keys pushed by transaction [\d:]+, which did not commit/;
		},
		10),
	'worker logged the repair of the crashed transaction');
$log = substr(slurp_file($node->logfile), $log_offset);
my $repaired = 0;
$repaired += $1 while $log =~ /repaired (\d+) keys pushed by transaction [\d:]+, which did not commit/g;
# markers of transactions that committed before the crash but were not yet
# cleared are repaired too (re-pushed, harmless): at least the 80 keys
cmp_ok($repaired, '>=', 50 + 10 + 10 + 10, 'repaired every key the crashed transaction pushed (80)');
my $marker = $node->safe_psql('postgres',
	"SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()");
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 10),
	'no in-flight marker left');
is($redis->cli('HGET', 'e:1', 'note'), 'e1', 'e:1 holds the committed value again');
is($redis->cli('EXISTS', 'e:101'), '0', 'e:101 (inserted by the crashed transaction) is gone');
is($redis->cli('HGET', 'e:95', 'note'), 'e95', 'e:95 (deleted by it) is back');

# normal operation afterwards
$node->safe_psql('postgres',
	"UPDATE e SET note = 'after' WHERE id <= 5; UPDATE s SET note = 'after' WHERE id <= 5;");
$e->cache_matches($redis, name => 'eventual table in step afterwards');
$st->cache_matches($redis, name => 'strict table in step afterwards');

$node->stop;
done_testing();

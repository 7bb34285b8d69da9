# The crash-after-push fault (see 023_crash_after_push.pl) in a database
# other than the first: a backend of "app2" PANICs right after its
# pre-commit push reached Redis, crash recovery rolls its transaction back,
# and the worker of app2 -- started again by the launcher after the crash
# restart, without any redis_sync.database setting -- finds the in-flight
# marker of app2 (the marker key names the database) and repairs the keys.
# The worker of "postgres" leaves app2's marker alone.  Table work of app2's
# worker runs as the table's owner (a write-behind drain, traced).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'crash2',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.marker_sweep_interval = '200ms'
restart_after_crash = on
EOC

RedisSync::Test::skip_unless_crash_injection($node);
my ($ret, $out, $err);

$node->safe_psql('postgres', 'CREATE DATABASE app2');
$node->safe_psql(
	'app2', q{
CREATE EXTENSION redis_sync;
CREATE TABLE e (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('e', key_prefix => 'app2:e:', consistency => 'eventual');
INSERT INTO e SELECT g, g, 'e' || g FROM generate_series(1, 100) g;
});
# a table in "postgres" too: its worker must not take app2's marker for its own
$node->safe_psql(
	'postgres', q{
CREATE TABLE p (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('p', key_prefix => 'pg:p:', consistency => 'eventual');
INSERT INTO p SELECT g, g, 'p' || g FROM generate_series(1, 10) g;
});
my %cmp = (
	dbname      => 'app2',
	table       => 'e',
	prefix      => 'app2:e:',
	key_columns => ['id'],
	columns     => [ 'id', 'v', 'note' ]);
RedisSync::Compare::cache_matches_table($node, $redis, %cmp, name => 'app2: table cached');

ok(RedisSync::Test::wait_crash_recovered($node, dbs => ['app2'], timeout => 30),
	'app2: worker running');

my $before = $node->safe_psql('app2', 'SELECT id, v, note FROM e ORDER BY id');
my $log_offset = -s $node->logfile;
($ret, $out, $err) = $node->psql(
	'app2', q{
SET redis_sync.debug_crash_after_push = on;
BEGIN;
SELECT 'xid=' || pg_current_xact_id();
UPDATE e SET v = v + 1000, note = 'crashed' WHERE id <= 50;
DELETE FROM e WHERE id > 90;
INSERT INTO e SELECT g, g, 'crashed' FROM generate_series(101, 110) g;
COMMIT;
});
isnt($ret, 0, 'the crashing COMMIT in app2 does not report success');
my ($crashed_xid) = $out =~ /xid=(\d+)/;
ok(defined $crashed_xid, "crashed transaction's xid: " . ($crashed_xid // '?'));
$crashed_xid //= -1;
ok(RedisSync::Test::wait_crash_recovered($node, dbs => [ 'app2', 'postgres' ]),
	'after crash recovery the launcher started both workers again');
my $log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/PANIC/, 'the backend PANICked (fault injection)');
is($node->safe_psql('app2', 'SELECT id, v, note FROM e ORDER BY id'), $before,
	'crashed transaction rolled back');

# commit past the crashed xid (it may be handed out again)
my $xid = 0;
my $guard = 0;
while ($xid <= $crashed_xid && $guard++ < 1000)
{
	$xid = $node->safe_psql('app2', 'SELECT pg_current_xact_id()');
}

RedisSync::Compare::wait_cache_matches_table($node, $redis, %cmp,
	timeout => 30, name => 'app2: cache == table after the repair');
is($redis->cli('HGET', 'app2:e:1', 'note'), 'e1', 'app2:e:1 holds the committed value again');
is($redis->cli('EXISTS', 'app2:e:101'), '0', 'app2:e:101 (inserted by the crashed transaction) is gone');
is($redis->cli('HGET', 'app2:e:95', 'note'), 'e95', 'app2:e:95 (deleted by it) is back');

my $marker = $node->safe_psql('postgres',
	"SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'app2') FROM pg_control_system()");
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 10),
	"app2's in-flight marker is cleared");
# the crashed transaction's keys were repaired by app2's worker (markers of
# transactions that committed just before the crash are repaired too, by
# the worker of their own database)
my $repair_re = qr/\[(\d+)\] LOG:  redis_sync worker: repaired (\d+) keys pushed by transaction \Q$crashed_xid\E,/;
ok( defined RedisSync::Compare::wait_for(
		sub { substr(slurp_file($node->logfile), $log_offset) =~ $repair_re }, 10),
	'a worker logged the repair of the crashed transaction');
$log = substr(slurp_file($node->logfile), $log_offset);
my ($repairer, $nkeys) = $log =~ $repair_re;
cmp_ok($nkeys // 0, '>=', 70, "it repaired the 70 keys the crashed transaction pushed");
is( $node->safe_psql('postgres',
		"SELECT database FROM redis_sync.worker_stats WHERE worker_pid = " . ($repairer // 0)),
	'app2', "the repair was done by app2's worker");

RedisSync::Compare::cache_matches_table($node, $redis,
	dbname      => 'postgres',
	table       => 'p',
	prefix      => 'pg:p:',
	key_columns => ['id'],
	columns     => [ 'id', 'v', 'note' ],
	name        => 'postgres: its table untouched');

# app2's worker acts as the table owner for table work: a write-behind table
# owned by a plain role, with a trigger that records who writes
$node->safe_psql(
	'app2', q{
CREATE ROLE alice LOGIN;
GRANT CREATE ON SCHEMA public TO alice;
CREATE TABLE trace (who text, super boolean);
GRANT INSERT ON trace TO alice;
SET ROLE alice;
CREATE TABLE w (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0);
CREATE FUNCTION w_trace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.trace SELECT current_user, r.rolsuper FROM pg_catalog.pg_roles r
   WHERE r.rolname = current_user;
  RETURN NEW;
END $$;
CREATE TRIGGER w_trace BEFORE INSERT OR UPDATE ON w FOR EACH ROW EXECUTE FUNCTION w_trace();
SELECT redis_sync.write_behind('w', key_prefix => 'app2:w:', counters => '{hits}');
RESET ROLE;
});
$redis->cli('HINCRBY', 'app2:w:1', 'hits', 3);
$redis->cli('SADD', 'app2:w:dirty', 1);
ok( defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('app2', 'SELECT count(*) FROM w WHERE hits = 3') == 1 }, 30),
	"app2: its worker drained alice's write-behind table");
is($node->safe_psql('app2', 'SELECT DISTINCT who || \' \' || super FROM trace'),
	'alice false', "... as alice, the table's owner, not as a superuser");

$node->stop;
done_testing();

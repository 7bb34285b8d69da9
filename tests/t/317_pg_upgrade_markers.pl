# pg_upgrade with an in-flight marker left in Redis by the old cluster.
#
# A backend dies right after its pre-commit push reached Redis
# (debug_crash_after_push): Redis holds values that never committed, and
# the in-flight marker naming the transaction is what the worker's sweep
# repairs them from.  Here the old cluster stops before its worker could
# sweep (restart_after_crash off; restarted once, cleanly shut down, while
# its worker cannot reach Redis), then it is pg_upgrade'd to a new cluster
# with the same Redis.  The marker hash is named after the system
# identifier (redis_sync:inflight:<system id>:<database>), which pg_upgrade
# changes: unless the new cluster takes the old identity's markers over,
# nothing ever repairs the rolled-back values (stale cache for good).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Upgrade;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $conf  = "shared_preload_libraries = 'redis_sync'\n"
  . "redis_sync.naptime = '200ms'\n"
  . "redis_sync.marker_sweep_interval = '200ms'\n";

my $old = PostgreSQL::Test::Cluster->new('old');
$old->init;
$old->append_conf('postgresql.conf', $conf . "redis_sync.redis_url = '" . $redis->url . "'\n"
	  . "restart_after_crash = off\n");
$old->start;
$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', q{
CREATE EXTENSION redis_sync;
CREATE TABLE e (id int PRIMARY KEY, v text);
INSERT INTO e SELECT g, 'v' || g FROM generate_series(1, 20) g;
SELECT redis_sync.write_through('e', key_prefix => 'e:');
});
is($redis->cli('HGET', 'e:1', 'v'), 'v1', 'old cluster: cached');
my $old_sysid = $old->safe_psql('app', 'SELECT system_identifier FROM pg_control_system()');
my $app_oid   = $old->safe_psql('app', "SELECT oid FROM pg_database WHERE datname = 'app'");

# the push reaches Redis, then the backend PANICs before its commit record
my ($ret, $out, $err) = $old->psql('app', q{
SET redis_sync.debug_crash_after_push = on;
UPDATE e SET v = 'crashed' WHERE id <= 5;
});
isnt($ret, 0, 'the crashing UPDATE does not report success');
ok(defined RedisSync::Compare::wait_for(sub { !-e $old->data_dir . '/postmaster.pid' }, 60),
	'old cluster stopped after the PANIC (restart_after_crash off)');
$old->_update_pid(0);
is($redis->cli('HGET', 'e:1', 'v'), 'crashed', 'Redis holds the value that never committed');
my $marker = "redis_sync:inflight:$old_sysid:$app_oid";
cmp_ok($redis->cli('HLEN', $marker), '>', 0, 'its in-flight marker is left in Redis');

# crash recovery, with the worker unable to reach Redis; a clean shutdown
$old->append_conf('postgresql.conf', "redis_sync.redis_url = 'redis://127.0.0.1:1/0'\n");
$old->start;
is($old->safe_psql('app', 'SELECT v FROM e WHERE id = 1'), 'v1', 'the transaction rolled back');
$old->stop;
cmp_ok($redis->cli('HLEN', $marker), '>', 0, 'the marker is still there at the upgrade');

my $new = RedisSync::Upgrade::upgrade($old, $conf . "redis_sync.redis_url = '" . $redis->url . "'\n");
$new->start;
my $new_sysid = $new->safe_psql('app', 'SELECT system_identifier FROM pg_control_system()');
ok( defined RedisSync::Compare::wait_for(
		sub { $new->safe_psql('app', 'SELECT system_identifier FROM redis_sync._identity') eq $new_sysid },
		30),
	'the worker of the new cluster recorded its identity');

# the sweep repairs the rolled-back values
my $fixed = RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'e:1', 'v') // '') eq 'v1' }, 15);
ok(defined $fixed, 'the rolled-back value is repaired after pg_upgrade (was: "crashed" for good)')
  or diag('e:1 = ' . ($redis->cli('HGET', 'e:1', 'v') // 'nil')
	  . ', old marker fields ' . $redis->cli('HLEN', $marker));
is($new->safe_psql('app', "SELECT count(*) FROM redis_sync.verify('e')"), '0', 'verify() finds no difference');
is($redis->cli('HLEN', $marker), '0', 'no marker of the old identity left');

$new->stop;
done_testing();

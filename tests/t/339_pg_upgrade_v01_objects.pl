# pg_upgrade of a database whose extension objects are still 0.1 (the 0.2
# library installed, ALTER EXTENSION UPDATE not run yet), from a cluster on
# timeline 3.
#
# 0.1 has no redis_sync._identity: nothing carries the old cluster's
# timeline across the upgrade, so the new cluster versions its writes at
# timeline part 1, below the 3 that Redis holds for every key written
# before: the fence ignores them (even write-through pushes at commit), and
# the keys stay stale (async delivery, repairs and read-through fills are
# fenced; a push at commit on a single Redis is not).  ALTER EXTENSION
# UPDATE afterwards makes the row with this cluster's floor (0) and does
# not repair it.  And the key prefix claims in Redis still name the old
# system, which the row (made by the update with this system's identifier)
# does not name: they are never adopted, write_through() of the database's
# own tables fails on them.  Not fixable from
# the new cluster (it cannot know the old timeline): README (After
# pg_upgrade) says to update the extension before pg_upgrade; the
# assertions of the stale keys are TODO.
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
  . "redis_sync.redis_url = '" . $redis->url . "'\n";

my $old = RedisSync::Upgrade::old_cluster($conf, timeline => 3);
$old->start;
$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', q{
CREATE EXTENSION redis_sync VERSION '0.1';
CREATE TABLE w (id int PRIMARY KEY, v text);
INSERT INTO w SELECT g, 'v' || g FROM generate_series(1, 5) g;
SELECT redis_sync.write_through('w', key_prefix => 'w:');
});
$old->safe_psql('app', q{UPDATE w SET v = v || '-old'});
is($redis->cli('HGET', 'w:1', 'v'), 'v1-old', 'old cluster: written through (0.1 objects)');
like($redis->cli('GET', '{w:1}:rs_version'), qr/^00000003/, 'old versions begin with timeline 3');
$old->stop;

my $new = RedisSync::Upgrade::upgrade($old, $conf);
$new->start;

# (a push at commit on a single Redis goes as MULTI without the version
# comparison, so it lands; what is fenced does not)
$new->safe_psql('app', 'ALTER EXTENSION redis_sync UPDATE');
is($new->safe_psql('app', 'SELECT timeline_base FROM redis_sync._identity'), '0',
	'the row made by the update has base 0 (the old timeline is unknown here)');
my ($ret, $out, $err) =
  $new->psql('app', q{SELECT redis_sync.write_through('w', key_prefix => 'w:', delivery => 'async', warm => false)});
TODO:
{
	local $TODO = 'a 0.1 database carries no identity across pg_upgrade (README: update before pg_upgrade)';
	is($ret, 0, 'write_through() of its own table after pg_upgrade') or diag($err);
}
# the repair README gives: the database's claims of the old system removed
if ($ret != 0)
{
	$redis->cli('HDEL', 'redis_sync:claims', 'p:w:');
	$new->safe_psql('app', q{SELECT redis_sync.write_through('w', key_prefix => 'w:', delivery => 'async', warm => false)});
}
$new->safe_psql('app', q{UPDATE w SET v = 'new' WHERE id = 3});
$new->safe_psql('app', q{SELECT redis_sync.flush()});
my $ver = $redis->cli('GET', '{w:3}:rs_version');
TODO:
{
	local $TODO = 'a 0.1 database carries no identity across pg_upgrade (README: update before pg_upgrade)';
	ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'w:3', 'v') // '') eq 'new' }, 10),
		'async delivery after pg_upgrade and ALTER EXTENSION UPDATE lands')
	  or diag('w:3 = ' . ($redis->cli('HGET', 'w:3', 'v') // 'nil') . ", version $ver");
	is($new->safe_psql('app', "SELECT count(*) FROM redis_sync.verify('w')"), '0', 'verify() finds no difference');
}

$new->stop;
done_testing();

# pg_upgrade of a server that had been promoted (WAL timeline 3) to a new
# cluster (timeline 1, a new system identifier), with the same Redis.
#
# Before identity.c, every version of the upgraded cluster began with
# timeline 1 and compared below the versions the old cluster left in
# Redis: async delivery was fenced out (the key kept its old value for
# good), and the key prefix claims named the old system, so write_through()
# of the database's own tables failed and unsync() left claims behind.
# Also checked: no redis_sync worker runs in the servers pg_upgrade starts
# (binary upgrade mode), and a template copy of the database keeps its
# base without taking the template's claims.
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
  . "redis_sync.redis_url = '" . $redis->url . "'\n"
  . "redis_sync.naptime = '200ms'\n";

# a server promoted twice runs on timeline 3; pg_resetwal puts it there
my $old = RedisSync::Upgrade::old_cluster($conf, timeline => 3);
$old->start;
is($old->safe_psql('postgres', 'SELECT timeline_id FROM pg_control_checkpoint()'), '3', 'old cluster on timeline 3');

$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', q{
CREATE EXTENSION redis_sync;
CREATE TABLE wt (id int PRIMARY KEY, v text);
CREATE TABLE wa (id int PRIMARY KEY, v text);
CREATE TABLE wi (id int PRIMARY KEY, v text);
INSERT INTO wt SELECT g, 'v' || g FROM generate_series(1, 20) g;
INSERT INTO wa SELECT g, 'v' || g FROM generate_series(1, 20) g;
INSERT INTO wi SELECT g, 'v' || g FROM generate_series(1, 20) g;
SELECT redis_sync.write_through('wt', key_prefix => 'wt:');
SELECT redis_sync.write_through('wa', key_prefix => 'wa:', delivery => 'async');
SELECT redis_sync.invalidate('wi', key_prefix => 'wi:');
});
$old->safe_psql('app', q{
UPDATE wt SET v = v || '-old';
UPDATE wa SET v = v || '-old';
SELECT redis_sync.flush();
});
like($redis->cli('GET', '{wa:1}:rs_version'), qr/^00000003/, 'old versions begin with timeline 3');
is($redis->cli('HGET', 'wa:1', 'v'), 'v1-old', 'old cluster delivered');
my $old_sysid = $old->safe_psql('app', 'SELECT system_identifier FROM pg_control_system()');
# a template copy of the database, made on the old cluster
$old->safe_psql('postgres', 'CREATE DATABASE app_copy TEMPLATE app');
$old->stop;

my $new = RedisSync::Upgrade::upgrade($old, $conf);
# the servers pg_upgrade started ran no worker: the claims still name the
# old system
my $claims = join("\n", $redis->cli('HVALS', 'redis_sync:claims'));
like($claims, qr/^\Q$old_sysid\E\/\d+\/\d+\t/m, 'no worker ran during pg_upgrade (claims untouched)');

$new->start;
is($new->safe_psql('app', 'SELECT timeline_id FROM pg_control_checkpoint()'), '1', 'new cluster on timeline 1');
my $new_sysid = $new->safe_psql('app', 'SELECT system_identifier FROM pg_control_system()');
isnt($new_sysid, $old_sysid, 'a new system identifier');

# async delivery of a change made at once, before the worker recorded the
# new identity or not: fenced above the old versions
$new->safe_psql('app', q{UPDATE wa SET v = 'new' WHERE id = 1});
$new->safe_psql('app', q{SELECT redis_sync.flush()});
is($redis->cli('HGET', 'wa:1', 'v'), 'new', 'async delivery after pg_upgrade lands (was fenced out as older)');
like($redis->cli('GET', '{wa:1}:rs_version'), qr/^00000004/, 'versions continue at timeline part 4 (base 3 + timeline 1)');
$new->safe_psql('app', q{UPDATE wt SET v = 'new' WHERE id BETWEEN 2 AND 5});
is($redis->cli('HGET', 'wt:3', 'v'), 'new', 'sync push after pg_upgrade');
$new->safe_psql('app', q{UPDATE wi SET v = 'new' WHERE id = 3});
is($new->safe_psql('app', q{SELECT v FROM redis_sync.get(NULL::wi, '3')}), 'new', 'read-through after pg_upgrade');
is($new->safe_psql('app', q{SELECT v FROM redis_sync.get(NULL::wi, '3')}), 'new', 'and cached');
is($redis->cli('HGET', 'wi:3', 'v'), 'new', 'invalidate table filled by the read');
for my $t ('wt', 'wa')
{
	is($new->safe_psql('app', "SELECT count(*) FROM redis_sync.verify('$t')"), '0', "$t: verify finds no difference");
}

# the worker adopts the claims and records the new identity
ok( defined RedisSync::Compare::wait_for(
		sub {
			$new->safe_psql('app', 'SELECT system_identifier FROM redis_sync._identity') eq $new_sysid;
		},
		30),
	'the worker records the new identity');
is($new->safe_psql('app', 'SELECT timeline_base || \'/\' || max_timeline FROM redis_sync._identity'), '3/1', 'base 3, timeline 1');
like($new->logfile ? slurp_file($new->logfile) : '', qr/this database was upgraded from system \Q$old_sysid\E/, 'logged');
$claims = join("\n", $redis->cli('HVALS', 'redis_sync:claims'));
my $app_oid = $new->safe_psql('app', "SELECT oid FROM pg_database WHERE datname = 'app'");
unlike($claims, qr/^\Q$old_sysid\E\/$app_oid\//m, 'no claim of the database names the old system');
like($claims, qr/^\Q$new_sysid\E\/$app_oid\/\d+\ttable public\.wt of database "app" on server \Q$new_sysid\E$/m,
	'claims adopted, description updated');

# its own tables can be configured again and unsynced
my ($ret, $out, $err) = $new->psql('app', q{SELECT redis_sync.write_through('wt', key_prefix => 'wt:', warm => false)});
is($ret, 0, 'write_through() of a table again after pg_upgrade') or diag($err);
$new->safe_psql('app', q{SELECT redis_sync.unsync('wi')});
is($redis->cli('HGET', 'redis_sync:claims', 'p:wi:'), '', 'unsync() releases the claim');

# the template copy keeps its base (versions as high) and adopts nothing
my $copy_oid = $new->safe_psql('app', "SELECT oid FROM pg_database WHERE datname = 'app_copy'");
ok( defined RedisSync::Compare::wait_for(
		sub { $new->safe_psql('app_copy', 'SELECT database FROM redis_sync._identity') eq $copy_oid }, 30),
	'copy: the worker records its own database');
is($new->safe_psql('app_copy', 'SELECT timeline_base FROM redis_sync._identity'), '3',
	'copy: base of the old system kept (base + timeline it saw)');
unlike(join("\n", $redis->cli('HVALS', 'redis_sync:claims')), qr/^\Q$new_sysid\E\/$copy_oid\//m,
	'copy: no claim of the template taken over');

# gone before app's claims are released below: else its worker may claim
# the free prefixes first (the same tables) and app's write_through() fails
$new->safe_psql('postgres', 'DROP DATABASE app_copy');

# the extension dropped and created again: Redis still holds the keys and
# versions of timeline part 3 and 4, so the new row starts at the cluster's
# floor (the highest base a database used), not at 0
$new->safe_psql('app', 'DROP EXTENSION redis_sync CASCADE');
$new->safe_psql('app', 'CREATE EXTENSION redis_sync');
is($new->safe_psql('app', 'SELECT timeline_base FROM redis_sync._identity'), '3', 'a new row starts at the floor');
$new->safe_psql('app', q{SELECT redis_sync.write_through('wa', key_prefix => 'wa:', delivery => 'async', warm => false)});
$new->safe_psql('app', q{UPDATE wa SET v = 'again' WHERE id = 2});
$new->safe_psql('app', q{SELECT redis_sync.flush()});
is($redis->cli('HGET', 'wa:2', 'v'), 'again', 'async delivery after DROP and CREATE EXTENSION lands');

$new->stop;
done_testing();

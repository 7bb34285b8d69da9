# Key prefixes are owned across every database and server that share one
# Redis database (issue 11).  Two databases of one server, and two servers
# (clusters) using the same Redis: a table that claims a prefix overlapping
# another's is refused with an error naming the holder (table, database,
# server); temporary tables cannot be synced at all; unsync releases the
# claim; TRUNCATE purges only the table's own keys; after Redis restarted
# empty, the background worker records its database's claims again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $a     = RedisSync::Test::new_node('claim_a', redis => $redis);
my $b     = RedisSync::Test::new_node('claim_b', redis => $redis);
my $sysid_a = $a->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
my $sysid_b = $b->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
isnt($sysid_a, $sysid_b, 'two clusters with different system identifiers');

$a->safe_psql('postgres', q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 'shared:');
INSERT INTO t VALUES (1, 'real');
});
is($redis->cli('HGET', 'shared:1', 'v'), 'real', 'A/postgres: t cached under shared:');

# a second database of the same server
$a->safe_psql('postgres', 'CREATE DATABASE db2');
$a->safe_psql('db2', 'CREATE EXTENSION redis_sync');
$a->safe_psql('db2', 'CREATE TABLE u (id int PRIMARY KEY, v text)');
my ($ret, $out, $err) = $a->psql('db2', "SELECT redis_sync.write_through('u', key_prefix => 'shared:')");
isnt($ret, 0, 'A/db2: the same prefix is refused');
like($err, qr/key prefix "shared:" overlaps key prefix "shared:" claimed by table public\.t of database "postgres" on server $sysid_a/,
	'... naming the holder');
($ret, $out, $err) = $a->psql('db2', "SELECT redis_sync.write_through('u', key_prefix => 'shared:1')");
like($err, qr/claimed by table public\.t of database "postgres"/, 'A/db2: a longer prefix inside it is refused');
($ret, $out, $err) = $a->psql('db2', "SELECT redis_sync.write_through('u', key_prefix => 'sha')");
like($err, qr/claimed by table public\.t of database "postgres"/, 'A/db2: a shorter prefix around it is refused');
# the reported attack: a temporary table with the same prefix
($ret, $out, $err) = $a->psql('db2', q{
CREATE TEMP TABLE tmp (id int PRIMARY KEY, v text);
INSERT INTO tmp VALUES (1, 'fake');
SELECT redis_sync.write_through('tmp', key_prefix => 'shared:');
});
like($err, qr/temporary table "tmp" cannot be synced/, 'A/db2: a temporary table cannot be synced');
($ret, $out, $err) = $a->psql('db2', q{
CREATE TEMP TABLE tmp (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('tmp', key_prefix => 'tmp:');
});
like($err, qr/temporary table "tmp" cannot be synced/, '... whatever its prefix');
is($redis->cli('HGET', 'shared:1', 'v'), 'real', 'readers of t still get its value');

$a->safe_psql('db2', q{
SELECT redis_sync.write_through('u', key_prefix => 'db2u:');
INSERT INTO u VALUES (1, 'u1');
});
is($redis->cli('HGET', 'db2u:1', 'v'), 'u1', 'A/db2: a prefix of its own works');

# a second server on the same Redis
$b->safe_psql('postgres', 'CREATE TABLE v (id int PRIMARY KEY, v text)');
($ret, $out, $err) = $b->psql('postgres', "SELECT redis_sync.write_through('v', key_prefix => 'shared:')");
isnt($ret, 0, 'B: the same prefix is refused');
like($err, qr/claimed by table public\.t of database "postgres" on server $sysid_a/, '... naming A');
($ret, $out, $err) = $b->psql('postgres', "SELECT redis_sync.write_through('v', key_prefix => 'db2u:x')");
like($err, qr/claimed by table public\.u of database "db2" on server $sysid_a/, 'B: inside A/db2\'s prefix: refused');
$b->safe_psql('postgres', q{
SELECT redis_sync.write_through('v', key_prefix => 'b:');
INSERT INTO v VALUES (1, 'b1');
});
is($redis->cli('HGET', 'b:1', 'v'), 'b1', 'B: a prefix of its own works');

# TRUNCATE purges only the table's own keys
$a->safe_psql('db2', 'TRUNCATE u');
is($redis->cli('EXISTS', 'db2u:1'), '0', 'TRUNCATE of A/db2.u purged its key');
is($redis->cli('HGET', 'shared:1', 'v') . ' ' . $redis->cli('HGET', 'b:1', 'v'), 'real b1',
	'... and nothing else');

# unsync releases the claim: now B may take the prefix
$a->safe_psql('postgres', "SELECT redis_sync.unsync('t')");
is($redis->cli('HEXISTS', 'redis_sync:claims', 'p:shared:'), '0', 'unsync released the claim');
$b->safe_psql('postgres', "SELECT redis_sync.write_through('v', key_prefix => 'shared:')");
like($redis->cli('HGET', 'redis_sync:claims', 'p:shared:'), qr/^$sysid_b\//, 'B now holds shared:');
($ret, $out, $err) = $a->psql('postgres', "SELECT redis_sync.write_through('t', key_prefix => 'shared:')");
like($err, qr/claimed by table public\.v of database "postgres" on server $sysid_b/, 'A is refused in turn');

# Redis restarted empty: the workers record their databases' claims again
# (a worker knows Redis restarted once it has seen its run_id before)
ok( defined RedisSync::Compare::wait_for(
		sub { $b->safe_psql('postgres', 'SELECT redis_run_id IS NOT NULL FROM redis_sync.worker_stats') eq 't' },
		60, 0.1),
	'B\'s worker has seen Redis');
$redis->stop;
$redis->start;
ok( defined RedisSync::Compare::wait_for(
		sub { $redis->cli('HGET', 'redis_sync:claims', 'p:shared:') =~ /^$sysid_b\// }, 60, 0.1),
	'after a Redis restart, B\'s worker claimed shared: again');
($ret, $out, $err) = $a->psql('postgres', "SELECT redis_sync.write_through('t', key_prefix => 'shared:')");
like($err, qr/claimed by table public\.v of database "postgres" on server $sysid_b/, '... and A is still refused');

$a->stop;
$b->stop;
done_testing();

# Prefix claims live in Redis (redis_sync:claims).  A Redis restarted empty
# has lost them: before the fix, a role in another database of the server
# could then sync a table with an existing table's prefix, write into its
# keys (readers of the real table got the impostor's values) and purge them
# with TRUNCATE.  The worker now records its database's claims again when it
# first reaches Redis and after every Redis restart.  A claim taken by
# another holder in between is logged (WARNING) and left alone.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(time usleep);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('reclaim', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE victim (id int PRIMARY KEY, secret text);
INSERT INTO victim VALUES (1, 's1'), (2, 's2');
SELECT redis_sync.write_through('victim', key_prefix => 'victim:');
CREATE TABLE wbt (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_behind('wbt', key_prefix => 'wbt:', dirty_set => 'wbt-dirty');
CREATE ROLE mallory LOGIN;
CREATE DATABASE other OWNER mallory;
});
$node->safe_psql('other', 'CREATE EXTENSION redis_sync');

my $holder = $node->safe_psql('postgres',
	q{SELECT pg_catalog.format('%s/%s/%s', system_identifier, (SELECT oid FROM pg_database WHERE datname = 'postgres'), 'victim'::regclass::oid) FROM pg_control_system()});

sub claim { my $f = shift; my $v = $redis->cli('HGET', 'redis_sync:claims', $f); $v =~ s/\t.*//s; return $v; }

sub wait_claim
{
	my ($field, $want) = @_;
	my $deadline = time + 20;
	while (time < $deadline)
	{
		return 1 if claim($field) eq $want;
		usleep(100_000);
	}
	return 0;
}

is(claim('p:victim:'), $holder, 'the prefix is claimed by the table');

# Redis restarted empty: the claims are gone, the worker records them again
$redis->stop;
$redis->start;
ok(wait_claim('p:victim:', $holder), 'the prefix claim is back after Redis restarted empty');
ok(wait_claim('k:wbt-dirty', claim('p:wbt:')) && claim('p:wbt:') ne '',
	'the write-behind claims (prefix and dirty set) are back');

# and another database cannot take the prefix any more
my ($ret, $out, $err) = $node->psql('other', q{
CREATE TABLE victim (id int PRIMARY KEY, secret text);
SELECT redis_sync.write_through('victim', key_prefix => 'victim:');
}, extra_params => [ '-U', 'mallory' ]);
like($err, qr/key prefix "victim:" overlaps key prefix "victim:" claimed by table public\.victim of database "postgres"/,
	'another database cannot sync an overlapping prefix after the restart');
is($redis->cli('HGET', 'victim:1', 'secret'), 's1', 'the cached value is the table\'s');

# a claim taken by someone else meanwhile: the worker logs it, keeps running
$node->safe_psql('postgres', q{SELECT redis_sync.worker_pause(60000)});
$redis->stop;
$redis->start;
$node->safe_psql('other', q{SELECT redis_sync.write_through('victim', key_prefix => 'victim:')},
	extra_params => [ '-U', 'mallory' ]);
my $offset = -s $node->logfile;
$node->safe_psql('postgres', q{SELECT redis_sync.worker_resume()});
ok($node->wait_for_log(qr/could not record the key prefix claim of table \d+ again: key prefix "victim:" overlaps/, $offset),
	'a claim taken meanwhile is reported in the log');
ok(wait_claim('p:wbt:', claim('p:wbt:')) && claim('p:wbt:') ne '', 'the other claims are recorded');
is($node->safe_psql('postgres', 'SELECT worker_running FROM redis_sync.worker_stats WHERE database = current_database()'), 't', 'the worker runs');

$node->stop;
$redis->stop;
done_testing();

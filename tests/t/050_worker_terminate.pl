# pg_terminate_backend() of the background worker (operators and monitoring
# tools do that) must not stop async delivery until the next server
# restart: the worker does its bounded final drain, exits so that the
# postmaster starts it again, and worker_stats counts the restart.  A server
# shutdown still stops it for good (the node stops cleanly, no new worker).
# Last, a DROP TABLE of the synced table: the worker purges its keys.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wterm', redis => $redis);

$node->safe_psql(
	'postgres', q{
CREATE TABLE a (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async');
});

ok($node->poll_query_until('postgres', 'SELECT worker_running FROM redis_sync.worker_stats'),
	'worker running');
is($node->safe_psql('postgres', 'SELECT worker_restarts FROM redis_sync.worker_stats'),
	'0', 'no restart counted yet');

for my $round (1 .. 2)
{
	my $pid0 = RedisSync::Compare::worker_stat($node, 'worker_pid');
	ok($pid0 > 0, "round $round: worker pid $pid0");
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid0)"),
		't', "round $round: pg_terminate_backend(worker)");
	my $t0 = time;
	my $w = RedisSync::Compare::wait_for(
		sub {
			my $out = $node->safe_psql('postgres',
				"SELECT worker_running AND worker_pid <> $pid0 FROM redis_sync.worker_stats");
			return $out eq 't';
		},
		5, 0.05);
	ok(defined $w, "round $round: a new worker runs within 5 s");
	diag(sprintf('round %d: new worker after %.2fs', $round, time - $t0));
	is($node->safe_psql('postgres', 'SELECT worker_restarts FROM redis_sync.worker_stats'),
		$round, "round $round: worker_stats.worker_restarts = $round");

	# an async insert afterwards reaches Redis (only the worker delivers it)
	$node->safe_psql('postgres', "INSERT INTO a VALUES ($round, 'after kill $round')");
	$w = RedisSync::Compare::wait_for(
		sub { $redis->cli('HGET', "a:$round", 'v') eq "after kill $round" }, 10, 0.05);
	ok(defined $w, "round $round: async insert after the restart reached Redis");
	is(RedisSync::Compare::outbox_depth($node), 0, "round $round: outbox empty");
}

# DROP TABLE: the worker delivers the purge of the table's keys
$node->safe_psql('postgres', q{
SELECT redis_sync.worker_pause();
INSERT INTO a VALUES (3, 'queued, then dropped');
DROP TABLE a;
});
is( $node->safe_psql('postgres', 'SELECT op FROM redis_sync.outbox'),
	'T', 'DROP TABLE: the queued insert is gone, a purge is queued');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
ok( defined RedisSync::Compare::wait_for(
		sub { $redis->cli('EXISTS', 'a:1', 'a:2', 'a:3') eq '0' }, 10, 0.05),
	'DROP TABLE: the worker purged the keys');
ok( defined RedisSync::Compare::wait_outbox_empty($node, 10, 0.05),
	'DROP TABLE: outbox empty');

# another database (its own worker since the launcher): DROP TABLE purges too
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{
CREATE EXTENSION redis_sync;
CREATE TABLE o (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('o', key_prefix => 'o:');
INSERT INTO o VALUES (1, 'x'), (2, 'y');
});
is($redis->cli('EXISTS', 'o:1', 'o:2'), '2', 'other database: rows cached');
$node->safe_psql('other', 'DROP TABLE o');
ok( defined RedisSync::Compare::wait_for(
		sub { $redis->cli('EXISTS', 'o:1', 'o:2') eq '0' }, 10, 0.05),
	'other database: DROP TABLE purged the keys');
ok( defined RedisSync::Compare::wait_for(
		sub { RedisSync::Compare::outbox_depth($node, 'other') == 0 }, 10, 0.05),
	'other database: nothing left in its outbox');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no crash: the worker exited, it was not killed');
like($log, qr/redis_sync worker shutting down/, 'worker logged its shutdown');

# a server shutdown stops the worker for good: the node stops cleanly
$node->stop('fast');
$log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'clean shutdown');
like($log, qr/database system is shut down/, 'server shut down with the worker');
done_testing();

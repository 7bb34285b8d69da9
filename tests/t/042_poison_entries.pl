# Queue entries that make their consumer fail are set aside, never retried
# into a loop (issue 12).
#
# - An in-flight marker whose repair fails (here: not JSON) is moved to the
#   hash <marker key>:failed and logged once; the other markers are still
#   repaired, and the worker keeps running.
# - An in-flight marker naming a table with a column "t" (the column that
#   shadowed the row alias and crashed the worker at every restart in 0.1)
#   is repaired normally.
# - A malformed outbox entry stays queued with its error and backs off; the
#   entries behind it are delivered.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time sleep);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'poison',
	redis      => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\n");

$node->safe_psql(
	'postgres', q{
CREATE TABLE ti (id int PRIMARY KEY, t int, x text);
SELECT redis_sync.write_through('ti', key_prefix => 'ti:');
INSERT INTO ti VALUES (1, 10, 'one'), (2, 20, 'two');
CREATE TABLE q (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('q', key_prefix => 'q:', delivery => 'async');
});
my $marker = $node->safe_psql('postgres',
	"SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()");
my $ti = $node->safe_psql('postgres', "SELECT 'ti'::regclass::oid");

# a stale value the repair must overwrite, and two markers of a
# transaction from an earlier server incarnation (so: did not commit)
$redis->cli('HSET', 'ti:1', 't', 'stale');
$redis->cli('HSET', $marker, '5:1:0:0', 'this is not json');
$redis->cli('HSET', $marker, '6:1:0:0', qq{[[$ti,"1"]]});
# a marker whose repair was started three times and never finished (the
# worker crashed during it): it must not be tried a fourth time
$redis->cli('HSET', 'ti:2', 't', 'stale too');
$redis->cli('HSET', "$marker:attempts", '7:1:0:0', '3');
$redis->cli('HSET', $marker, '7:1:0:0', qq{[[$ti,"2"]]});

ok( defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 30),
	'all markers left the in-flight hash');
is($redis->cli('HGET', "$marker:failed", '7:1:0:0'), qq{[[$ti,"2"]]},
	'the marker whose repairs never finished is set aside');
is($redis->cli('HGET', 'ti:2', 't'), 'stale too', 'and was not tried again');
is($redis->cli('HLEN', "$marker:attempts"), '0', 'no attempt counts are left behind');
is($redis->cli('HGET', "$marker:failed", '5:1:0:0'), 'this is not json',
	'the marker that failed is set aside in <marker key>:failed');
is($redis->cli('HEXISTS', "$marker:failed", '6:1:0:0'), '0',
	'the good marker is not set aside');
is($redis->cli('HGET', 'ti:1', 't'), '10', 'the good marker (table with a column "t") was repaired');

my $log = slurp_file($node->logfile);
my @aside = $log =~ /could not repair the keys of in-flight marker 5:1:0:0/g;
is(scalar(@aside), 1, 'the failed marker is logged once, not retried');
like($log, qr/in-flight marker 7:1:0:0 set aside in \S+:failed: 3 earlier repairs of it did not finish/,
	'the marker whose repairs never finished is logged');
unlike($log, qr/terminated by signal/, 'no process terminated by a signal');

# a malformed outbox entry does not hold up the others
$node->safe_psql(
	'postgres', q{
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
VALUES ('q'::regclass, 'q:bad', 'H', '"not an object"', '000000010000000000000001');
INSERT INTO q VALUES (1, 1), (2, 2);
});
ok( defined RedisSync::Compare::wait_for(
		sub { $redis->cli('HGET', 'q:2', 'v') eq '2' }, 30),
	'entries behind the malformed one are delivered');
ok( defined RedisSync::Compare::wait_for(
		sub {
			$node->safe_psql('postgres',
				"SELECT attempts > 0 FROM redis_sync.outbox WHERE redis_key = 'q:bad'") eq 't';
		},
		30),
	'the malformed entry was tried');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), min(last_error) FROM redis_sync.outbox"),
	'1|malformed outbox payload: a hash must be a JSON object',
	'only the malformed entry stays queued, with its error');
is($node->safe_psql('postgres',
		"SELECT next_attempt_at > enqueued_at FROM redis_sync.outbox"),
	't', 'and it has a retry time (it backs off)');
is($redis->cli('EXISTS', 'q:bad'), '0', 'nothing was written for it');
is($node->safe_psql('postgres', 'SELECT worker_running FROM redis_sync.worker_stats'),
	't', 'the worker is running');

$node->stop;
$redis->stop;

done_testing();

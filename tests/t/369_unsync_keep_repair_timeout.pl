# The repair that write_through() queues after an unsync() without purge
# runs resync() as one step of the worker, bounded by redis_sync.warm_timeout.
# A table too large to repair within it (200 ms: the repair of 20,000 keys
# took 0.9 s here once verify() got faster, too close to the 1 s this
# used): the step is cancelled, the queue (redis_sync.warming) says what
# failed and that warm() repairs it in a session, and warm() does
# (verify() clean, the queued repair done).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('unsync_timeout', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '200ms'\n");

$node->safe_psql('postgres', q{
	CREATE TABLE big (id int PRIMARY KEY, v int, pad text);
	INSERT INTO big SELECT g, 0, repeat('x', 40) FROM generate_series(1, 100000) g;
	SELECT redis_sync.write_through('big', key_prefix => 'big:', warm => false);
	SELECT redis_sync.warm('big');
	SELECT redis_sync.unsync('big');
	UPDATE big SET v = 1 WHERE id % 10 = 0;
	DELETE FROM big WHERE id % 10 = 1;
	SELECT redis_sync.write_through('big', key_prefix => 'big:');
});
ok(defined RedisSync::Compare::wait_for(sub {
		$node->safe_psql('postgres',
			"SELECT state FROM redis_sync.warming WHERE \"table\" = 'big'::regclass") eq 'retrying' }, 120),
	'the repair ran into warm_timeout');
like($node->safe_psql('postgres',
		"SELECT last_error FROM redis_sync.warming WHERE \"table\" = 'big'::regclass"),
	qr/repair of the keys an unsync without purge left \(resync\(\)\) failed: .*redis_sync\.warm\('public\.big'\) in a session repairs them/,
	'warming names the repair and warm() as the way out');

$node->safe_psql('postgres', "SELECT redis_sync.warm('big')");
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('big')"), '0',
	'warm() in a session repaired the keys');
is($node->safe_psql('postgres',
		"SELECT state FROM redis_sync.warming WHERE \"table\" = 'big'::regclass"), 'done',
	'and finished the queued repair');
is($redis->cli('EXISTS', 'big:11'), '0', 'a row deleted while unsynced has no key');

done_testing();

# A push's in-flight markers under a Redis that limits a client's output
# buffer (client-output-buffer-limit normal 1mb).  A marker names the keys
# of one pushed chunk, and the worker's sweep reads a marker in one reply:
# with redis_sync.chunk_size 100,000, a chunk of integer keys left a marker
# of 1.7 MB, which no sweep could read under the limit, so the keys of a
# crashed push stayed unrepaired for as long as the limit held (helper-109).
# The push itself was dropped first: a MULTI/EXEC chunk of 100,000 keys has
# an EXEC reply of about 1 MB.  A chunk now ends early once the keys it
# names pass 32 kB.
#
# Fault injection: redis_sync.debug_crash_after_push (as in
# tests/t/373_marker_sweep_client_limit) makes the backend PANIC right after
# its push reached Redis, before its commit record.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $ROWS  = 200_000;
my $redis = RedisSync::Test::redis_object(
	extra => [ '--client-output-buffer-limit', 'normal 1mb 1mb 0' ]);
$redis->start;
my $node = RedisSync::Test::new_node(
	'marker_size',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.marker_sweep_interval = '200ms'
redis_sync.max_buffer_bytes = '1GB'
restart_after_crash = on
EOC

RedisSync::Test::skip_unless_crash_injection($node);

$node->safe_psql('postgres', qq{
CREATE TABLE s (id int PRIMARY KEY, v int);
INSERT INTO s SELECT g, g FROM generate_series(1, $ROWS) g;
SELECT redis_sync.write_through('s', key_prefix => 's:', consistency => 'strict', warm => false);
SELECT redis_sync.warm('s');
});

# what Redis holds (read by Redis itself) and what the table holds
my $cache_sums = sub { return RedisSync::Compare::int_sums_cache($redis, 's:', $ROWS); };
my $table_sums = sub { return RedisSync::Compare::int_sums_table($node, 's'); };
is($cache_sums->(), $table_sums->(), 'the table is cached');

my $mkey = 'redis_sync:inflight:' . $node->safe_psql('postgres',
	q{SELECT system_identifier || ':' || (SELECT oid FROM pg_database WHERE datname = current_database())
	    FROM pg_control_system()});

# chunks of up to 100,000 rows; the backend dies after its push
my $log_offset = -s $node->logfile;
my ($ret, $out, $err) = $node->psql(
	'postgres', q{
SET redis_sync.chunk_size = 100000;
SET redis_sync.debug_crash_after_push = on;
UPDATE s SET v = v + 1000000;
});
isnt($ret, 0, 'the crashing UPDATE does not report success');
ok(RedisSync::Test::wait_crash_recovered($node), 'node back after crash recovery, worker running');
like(substr(slurp_file($node->logfile), $log_offset), qr/PANIC/,
	'the backend PANICked after its push (fault injection)');

my $repaired = sub {
	my $log = substr(slurp_file($node->logfile), $log_offset);
	my $n   = 0;
	$n += $1 while $log =~ /repaired (\d+) keys pushed by transaction [\d:]+, which did not commit/g;
	return $n;
};
ok(defined RedisSync::Compare::wait_for(sub { $repaired->() >= $ROWS }, 90),
	"under the limit, the worker repairs the $ROWS keys the crashed transaction pushed");
is($repaired->(), $ROWS, '... each once');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $mkey) eq '0' }, 30),
	'... and removes its markers');
is($cache_sums->(), $table_sums->(), 'Redis holds the committed rows again');
# (the push too: before, a chunk of 100,000 keys in MULTI/EXEC had an EXEC
# reply of 1 MB, and Redis dropped the push itself)
my $dropped = () = slurp_file("$redis->{dir}/redis.log") =~ /scheduled to be closed ASAP/g;
is($dropped, 0, 'Redis dropped no client for its output buffer (redis.log)');

$node->stop;
done_testing();

# The worker's sweep of in-flight markers under a Redis that limits a
# client's output buffer (client-output-buffer-limit normal 1mb).  A marker's
# value names the keys of one pushed chunk, so a marker hash of a few large
# pushes holds megabytes.  The sweep read it with HSCAN ... COUNT 1000: one
# reply of the whole hash here (4.5 MB), more than the limit, so Redis
# dropped the worker's connection at every sweep and the sweep never got
# through (review helper-101).  The keys a crashed strict transaction had
# pushed then stayed in Redis, unrepaired, for as long as the limit held,
# and so did the markers of committed transactions.  The sweep now sizes
# its pages by the largest marker it has read (marker_sweep.c).
#
# Fault injection: redis_sync.debug_crash_after_push (as in
# tests/t/023_crash_after_push) makes the backend PANIC right after its
# push reached Redis, before its commit record.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'sweeplimit',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.marker_sweep_interval = '200ms'
restart_after_crash = on
EOC

RedisSync::Test::skip_unless_crash_injection($node);
my ($ret, $out, $err);

# 60,000 rows keyed by 64-character strings: a marker names the keys of its
# 1,000 rows, so 60 markers of about 75 kB each (an HSCAN of the whole hash:
# 4.5 MB)
my $t = RedisSync::Synced::synced_table($node, 'big', prefix => 'big:',
	columns => 'k text PRIMARY KEY, v int NOT NULL',
	with    => "consistency => 'strict', warm => false",
	fill    => q{SELECT lpad(g::text, 64, '0'), g FROM generate_series(1, 60000) g});
$node->safe_psql('postgres', q{SELECT redis_sync.warm('big')});
$t->cache_matches($redis, 'the table is cached');

my $mkey = 'redis_sync:inflight:' . $node->safe_psql('postgres',
	q{SELECT system_identifier || ':' || (SELECT oid FROM pg_database WHERE datname = current_database())
	    FROM pg_control_system()});
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $mkey) eq '0' }, 30),
	'no markers left before the test');

my $limit = sub {
	is($redis->cli('CONFIG', 'SET', 'client-output-buffer-limit', $_[0]), 'OK',
		"client-output-buffer-limit $_[0]");
};

# the limit: Redis drops a client whose pending output passes 1 MB
$limit->('normal 1mb 1mb 0');

# a strict transaction whose push reaches Redis, then the backend dies
my $before = $node->safe_psql('postgres', 'SELECT sum(v) FROM big');
my $log_offset = -s $node->logfile;
($ret, $out, $err) = $node->psql(
	'postgres', q{
SET redis_sync.debug_crash_after_push = on;
UPDATE big SET v = v + 1000000;
});
isnt($ret, 0, 'the crashing UPDATE does not report success');
ok(RedisSync::Test::wait_crash_recovered($node),
	'node back after crash recovery, worker running');
like(substr(slurp_file($node->logfile), $log_offset), qr/PANIC/,
	'the backend PANICked after its push (fault injection)');
is($node->safe_psql('postgres', 'SELECT sum(v) FROM big'), $before,
	'the crashed UPDATE is rolled back');

# the sweep gets through the big hash under the limit and repairs the keys
my $repaired = sub {
	my $log = substr(slurp_file($node->logfile), $log_offset);
	my $n   = 0;
	$n += $1 while $log =~ /repaired (\d+) keys pushed by transaction [\d:]+, which did not commit/g;
	return $n;
};
ok(defined RedisSync::Compare::wait_for(sub { $repaired->() >= 60000 }, 60),
	'under the limit, the worker repairs the 60,000 keys the crashed transaction pushed');
is($repaired->(), 60000, '... each once');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $mkey) eq '0' }, 30),
	'... and removes its markers');
# the comparison's own script reads the whole cache in one reply: lifted
$limit->('normal 0 0 0');
$t->cache_matches($redis, 'the cache matches the table after the repair');

# markers of a committed transaction whose session is gone: swept too
$limit->('normal 1mb 1mb 0');
$node->safe_psql('postgres', 'UPDATE big SET v = v + 1');
# (its 60 markers, 4.5 MB: the session that would clear them has exited)
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $mkey) eq '0' }, 30),
	'the markers of a committed UPDATE of every row are swept under the limit');
$limit->('normal 0 0 0');
$t->cache_matches($redis, 'the committed UPDATE is in Redis');

# the worker was not dropped for the sweep's replies
my $dropped = () = slurp_file("$redis->{dir}/redis.log") =~ /cmd=hscan [^\n]*scheduled to be closed ASAP/g;
is($dropped, 0, 'Redis never dropped a client for an HSCAN reply');

$node->stop;
done_testing();

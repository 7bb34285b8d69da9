# verify() of a write-behind table with a backlog in its dirty set: keys
# that differ from their rows are "pending" when the dirty or processing set
# holds them.  verify() read both sets whole (SMEMBERS, in _dirty_members)
# and passed every member to _verify_table as one array, hashed again: one
# Redis command as slow as the backlog is large, blocking every other
# client, and backend memory growing with it, even for verify(sample => 10).
# Now _verify_table asks SISMEMBER of the keys that differ, a batch at a
# time.
#
# Before (sandbox, 500,000 dirty members): SMEMBERS 0.44-0.57 s in
# Redis's SLOWLOG, verify(sample => 10) +61 MB of backend RssAnon; now no
# SMEMBERS and +0 MB.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('verify_dirty_backlog', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

my $N = 200000;

$node->safe_psql('postgres', qq{
CREATE TABLE wbl (id int PRIMARY KEY, v int);
INSERT INTO wbl SELECT g, 0 FROM generate_series(1, $N) g;
SELECT redis_sync.write_behind('wbl', key_prefix => 'wbl:', dirty_set => 'wbl-dirty',
                               flush_interval => '1 day');
CREATE TABLE tiny (id int PRIMARY KEY, v int);
INSERT INTO tiny VALUES (1, 1);
SELECT redis_sync.write_through('tiny', key_prefix => 'tiny:');
});
# paused, the worker neither drains nor takes the processing set's member
# for one a crash left (it would drain it, and wbl:1 would no longer differ)
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
# writes the drain has not read yet: every row's hash differs, and is dirty
$redis->cli('EVAL',
	"for i = 1, tonumber(ARGV[1]) do redis.call('HSET', 'wbl:' .. i, 'v', tostring(i)); "
	  . "redis.call('SADD', KEYS[1], tostring(i)) end return 1",
	'1', 'wbl-dirty', $N);
# and one in the processing set, one key neither holds
$redis->cli('SREM', 'wbl-dirty', '1');
$redis->cli('SADD', '{wbl-dirty}:rs_processing', '1');
$redis->cli('SREM', 'wbl-dirty', '2');
$redis->cli('CONFIG', 'RESETSTAT');

my $s = RedisSync::Test::session($node);
my $bpid = $s->query('SELECT pg_backend_pid()')->{out};
ok($bpid =~ /^\d+$/, "the session's backend ($bpid)");
# warm up: the table read once, the library and verify() loaded (on
# another table: a verify() of wbl would have set the peak already)
$s->query(q{SET work_mem = '1MB'; SELECT count(*) FROM wbl});
$s->query(q{SELECT count(*) FROM redis_sync.verify('tiny', sample => 10)});
my $before = RedisSync::Test::vmhwm_kb($bpid);
my $r = $s->query(q{SELECT count(*) FROM redis_sync.verify('wbl', sample => 10)});
is($r->{err}, '', 'verify(sample => 10) succeeded');
my $grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB for verify(sample => 10), $N dirty members");
cmp_ok($grew_mb, '<', 12, "verify(sample => 10) did not hold the $N dirty members (about 25 MB)");
unlike($redis->cli('INFO', 'commandstats'), qr/cmdstat_smembers/,
	'no SMEMBERS of the dirty set (it blocks Redis as long as the set is large)');

$r = $s->query(q{SELECT key, problem FROM redis_sync.verify('wbl')
                  WHERE key IN ('wbl:1', 'wbl:2', 'wbl:3', 'wbl:' || } . $N . q{) ORDER BY key});
is($r->{out}, "wbl:1|pending\nwbl:2|different value\nwbl:200000|pending\nwbl:3|pending",
	'keys in the dirty or processing set are pending, the other differs');
is($node->safe_psql('postgres',
		q{SELECT problem, count(*) FROM redis_sync.verify('wbl') GROUP BY 1 ORDER BY 1}),
	"different value|1\npending|" . ($N - 1), 'every dirty key is pending');

# _dirty_members() pages with SSCAN too
$redis->cli('CONFIG', 'RESETSTAT');
is($node->safe_psql('postgres', q{SELECT count(DISTINCT m) FROM redis_sync._dirty_members('wbl') m}),
	$N - 1, '_dirty_members() lists the dirty and processing sets');
my $stats = $redis->cli('INFO', 'commandstats');
unlike($stats, qr/cmdstat_smembers/, '_dirty_members() sent no SMEMBERS');
like($stats, qr/cmdstat_sscan:calls=\d{3}/, 'but an SSCAN a page');

$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
$s->quit;
$node->stop;
$redis->stop;
done_testing();

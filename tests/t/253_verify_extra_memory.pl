# verify() and resync() of a table whose keys in Redis have no row (rows
# deleted while nothing pushed, a cache filled by another writer): each
# extra key is reported with its value, read back from Redis.  The replies
# and their jsonb (about 4 kB a key) were allocated in the memory context
# of the call, which lasts until verify() returns: 200,000 extra keys took
# 763 MB of backend memory (sandbox); +7 MB now.  _fetch() likewise.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('verify_extra_memory', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

my $N = 20000;

$node->safe_psql('postgres', q{
CREATE TABLE ex (id int PRIMARY KEY, note text);
SELECT redis_sync.write_through('ex', key_prefix => 'ex:', warm => false);
CREATE TABLE tiny (id int PRIMARY KEY, v int);
INSERT INTO tiny VALUES (1, 1);
SELECT redis_sync.write_through('tiny', key_prefix => 'tiny:');
});
$redis->cli('EVAL',
	"for i = 1, tonumber(ARGV[1]) do redis.call('HSET', 'ex:' .. i, 'note', string.rep('n', 100) .. i) end return 1",
	'0', $N);

my $s = RedisSync::Test::session($node);
my $bpid = $s->query('SELECT pg_backend_pid()')->{out};
ok($bpid =~ /^\d+$/, "the session's backend ($bpid)");
# warm up: the library and verify() loaded, on another table
$s->query(q{SET work_mem = '1MB'; SELECT count(*) FROM redis_sync.verify('tiny')});
my $before = RedisSync::Test::vmhwm_kb($bpid);
my $r = $s->query(q{SELECT problem, count(*) FROM redis_sync.verify('ex') GROUP BY 1});
is($r->{out}, "extra in cache|$N", 'verify() reports every extra key');
my $grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB for the verify() of $N extra keys");
cmp_ok($grew_mb, '<', 20, "verify() did not keep the values of the $N extra keys (about 75 MB)");

$before = RedisSync::Test::vmhwm_kb($bpid);
$r = $s->query(q{SELECT redis_sync.resync('ex')});
is($r->{out}, $N, 'resync() deleted every extra key');
$grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB more for the resync()");
cmp_ok($grew_mb, '<', 20, 'and did not keep their values either');
is($redis->cli('EXISTS', "ex:$N"), '0', 'the extra keys are gone');

$s->quit;

# _fetch() (read the values of given keys) kept each reply's jsonb the same
# way: 100,000 keys took 481 MB (sandbox), +14 MB now
$redis->cli('EVAL',
	"for i = 1, tonumber(ARGV[1]) do redis.call('HSET', 'ex:' .. i, 'note', string.rep('n', 100) .. i) end return 1",
	'0', $N);
$s = RedisSync::Test::session($node);
$bpid = $s->query('SELECT pg_backend_pid()')->{out};
$s->query(q{SET work_mem = '1MB'; SELECT count(*) FROM redis_sync._fetch(ARRAY['ex:1'], true)});
$before = RedisSync::Test::vmhwm_kb($bpid);
$r = $s->query(qq{SELECT count(*) FROM redis_sync._fetch(ARRAY(SELECT 'ex:' || g FROM generate_series(1, $N) g), true)});
is($r->{out}, $N, '_fetch() read every key');
$grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB for the _fetch() of $N keys");
cmp_ok($grew_mb, '<', 20, "_fetch() did not keep the values of the $N keys (about 95 MB)");
$s->quit;

$node->stop;
$redis->stop;
done_testing();

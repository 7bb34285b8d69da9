# verify() of a table whose keys are all in Redis: every key SCAN returns
# goes into a sort (within work_mem) to be merged with the rows' keys.  The
# page function also left a text copy of each key in the memory context of
# the call, which lasts the whole verify(): its memory grew with the number
# of keys in Redis (TAP 240 did not see it: after its FLUSHALL, SCAN finds
# one key).
#
# Before the fix: 80,000 cached rows with 300-byte keys, peak backend
# memory (VmHWM) +43 MB for the verify(); +14 MB after.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('verify_scan_memory', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

my $N = 80000;

$node->safe_psql('postgres', qq{
CREATE TABLE vl (k text PRIMARY KEY, v int NOT NULL);
INSERT INTO vl SELECT repeat('x', 300) || g, g FROM generate_series(1, $N) g;
SELECT redis_sync.write_through('vl', key_prefix => 'vl:', warm => false);
});
is($node->safe_psql('postgres', q{SELECT redis_sync.resync('vl')}), $N, 'every row pushed');
is($redis->cli('DBSIZE') >= $N, 1, 'the keys are in Redis');

my $s = RedisSync::Test::session($node);
my $bpid = $s->query('SELECT pg_backend_pid()')->{out};
ok($bpid =~ /^\d+$/, "the session's backend ($bpid)");
# the table read once (its pages in shared buffers count in the peak)
$s->query(q{SET work_mem = '1MB'; SELECT count(*) FROM redis_sync.verify('vl', sample => 10)});
my $before = RedisSync::Test::vmhwm_kb($bpid);
my $r = $s->query(q{SELECT count(*) FROM redis_sync.verify('vl')});
is($r->{out}, '0', 'verify() finds no difference');
my $grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB for the verify() of $N cached rows");
cmp_ok($grew_mb, '<', 18,
	"verify() did not keep the $N keys SCAN returned (about 25 MB of 300-byte keys)");

$s->quit;
$node->stop;
$redis->stop;
done_testing();

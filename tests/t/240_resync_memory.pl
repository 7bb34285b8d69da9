# verify() and resync() of a table whose cache was lost (FLUSHALL): every
# row's key is missing, and resync() pushes them all.  verify() sorts the
# rows' keys and those SCAN finds (within work_mem, spilling to temporary
# files) and merges them to find the keys no row has; resync() pushes the
# keys verify() reported 10,000 at a time.  Neither's memory grows with
# the number of rows.
#
# Before: verify() kept a hash of every row's key (about 100 bytes a row),
# and resync() one array of every key to repair, pushed in one call (about
# 350 bytes a key in all: a resync of 300,000 rows peaked at 105 MB of
# backend RssAnon, 21 MB now; a 10-million-row table needed gigabytes).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('resync_memory', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

my $N = 200000;

$node->safe_psql('postgres', qq{
CREATE TABLE rz (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
INSERT INTO rz SELECT g, g, 'row number ' || g FROM generate_series(1, $N) g;
SELECT redis_sync.write_through('rz', key_prefix => 'rz:', warm => false);
});
# a key without a row, and one with a wrong value: resync() repairs them too
$redis->cli('FLUSHALL');
$redis->cli('HSET', 'rz:0', 'v', '0');
$redis->cli('SET', '{rz:0}:rs_version', '00000000000000000000000000000001');

my $s = RedisSync::Test::session($node);
my $bpid = $s->query('SELECT pg_backend_pid()')->{out};
ok($bpid =~ /^\d+$/, "the session's backend ($bpid)");
# the table read once (its pages in shared buffers count in the peak)
$s->query(q{SET work_mem = '1MB'; SELECT count(*) FROM redis_sync.verify('rz', sample => 10)});
my $before = RedisSync::Test::vmhwm_kb($bpid);
my $r = $s->query(q{SELECT problem, count(*) FROM redis_sync.verify('rz') GROUP BY 1 ORDER BY 1});
is($r->{out}, "extra in cache|1\nmissing in cache|$N", 'verify() reports every missing key and the extra one');
my $grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB for the verify() of $N rows");
cmp_ok($grew_mb, '<', 12, "verify() did not hold the $N rows' keys (about 20 MB)");

$before = RedisSync::Test::vmhwm_kb($bpid);
$r = $s->query(q{SELECT redis_sync.resync('rz')});
is($r->{err}, '', 'resync() succeeded');
is($r->{out}, $N + 1, 'it repaired every missing key and the extra one');
$grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB more for the resync of $N keys");
cmp_ok($grew_mb, '<', 20, "resync() did not hold the $N keys it pushed (about 70 MB)");

is($redis->cli('HGET', "rz:$N", 'note'), "row number $N", 'the last row is cached');
is($redis->cli('EXISTS', 'rz:0'), '0', 'the key without a row is gone');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('rz')}), '0',
	'verify() finds no difference');

$s->quit;
$node->stop;
$redis->stop;
done_testing();

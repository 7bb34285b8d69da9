# retry_dead_letters() of a table with many dead letters: their members go
# back into the dirty set 1,000 per SADD.  It read every dead letter of the
# table at once and sent one SADD of them all: backend memory growing with
# their number, and one Redis command as slow (blocking every other client)
# that could outlast the client's timeout, leaving the caller an ERROR while
# Redis had added them.
#
# Before (sandbox, 500,000 dead letters): +64 MB of peak backend RssAnon,
# an SADD of 0.91 s in SLOWLOG, "did not answer within 1000 ms".
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('retry_dead_letters_batched', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

my $N = 200000;

$node->safe_psql('postgres', qq{
CREATE TABLE dl (id int PRIMARY KEY, v int);
SELECT redis_sync.write_behind('dl', key_prefix => 'dl:', dirty_set => 'dl-dirty',
                               flush_interval => '1 day');
INSERT INTO redis_sync.dead_letters (relid, redis_key, member, error, sqlstate)
SELECT 'dl'::regclass, 'dl:' || g, g::text, 'test', 'XX000' FROM generate_series(1, $N) g;
});
$redis->cli('CONFIG', 'RESETSTAT');

my $s = RedisSync::Test::session($node);
my $bpid = $s->query('SELECT pg_backend_pid()')->{out};
ok($bpid =~ /^\d+$/, "the session's backend ($bpid)");
# warm up: the dead letters read once, the library loaded
$s->query(q{SELECT count(*) FROM redis_sync.dead_letters; SELECT redis_sync.retry_dead_letters('dl') WHERE false});
my $before = RedisSync::Test::vmhwm_kb($bpid);
my $r = $s->query(q{SELECT redis_sync.retry_dead_letters('dl')});
is($r->{err}, '', 'retry_dead_letters() succeeded');
is($r->{out}, $N, 'it put back every dead letter');
my $grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB for retry_dead_letters() of $N dead letters");
cmp_ok($grew_mb, '<', 10, "retry_dead_letters() did not hold the $N members (about 25 MB)");
cmp_ok($redis->cli('SCARD', 'dl-dirty'), '>=', $N - 1000, 'the members are back in the dirty set');
my ($calls) = $redis->cli('INFO', 'commandstats') =~ /cmdstat_sadd:calls=(\d+)/;
cmp_ok($calls // 0, '>=', $N / 1000, "one SADD a thousand members ($calls), not one of them all");

$s->quit;
$node->stop;
$redis->stop;
done_testing();

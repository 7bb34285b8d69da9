# Redis full (maxmemory with noeviction) while write-behind counter keys the
# application created from nothing wait to be drained: the claim (SREM then
# SADD in one script) still runs, the correction's HINCRBY is refused
# (OOM), the batch is rolled back and retried.  No dead letter, the reason in
# last_error, flush() warns; once Redis has room again every counter is
# exact in the table and in Redis.  Before, the log and last_error (which
# flush() shows) said only "Redis ... returned an error for a counter
# correction": the reason, Redis's error, was in a DETAIL they dropped.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbfull', redis => $redis);
my $n     = 600;

$node->safe_psql(
	'postgres', qq{
CREATE TABLE c (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0, note text);
INSERT INTO c SELECT g, 100, 'n' || g FROM generate_series(1, $n) g;
SELECT redis_sync.write_behind('c', key_prefix => 'c:', counters => '{hits}',
                               batch_size => 100, flush_interval => '100 ms');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# the keys are created from
# nothing (no seed marker), three increments each
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
RedisSync::WB::pipe_run(
	$redis,
	RedisSync::WB::write_resp(
		"$PostgreSQL::Test::Utils::tmp_check/343.resp",
		map { my $id = $_; map { ([ 'HINCRBY', "c:$id", 'hits', 1 ], [ 'SADD', 'c:dirty', $id ]) } 1 .. 3 } 1 .. $n),
	6 * $n);
my ($used) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
$redis->cli('CONFIG', 'SET', 'maxmemory', $used);    # full now

$node->psql('postgres', 'SELECT redis_sync.flush()');
ok( defined RedisSync::Compare::wait_for(
		sub {
			sql(q{SELECT coalesce(drain_retries, 0) > 0 FROM redis_sync.stats
			      WHERE "table" = 'c'::regclass AND policy = 'write_behind'}) eq 't';
		},
		60),
	'the drain is retried while Redis is full');
my $err = sql(q{SELECT last_error FROM redis_sync.stats WHERE "table" = 'c'::regclass AND policy = 'write_behind'});
like($err, qr/OOM|maxmemory|memory/i, 'last_error says Redis is out of memory');
my ($ret, $out, $stderr) = $node->psql('postgres', 'SELECT redis_sync.flush()');
like($stderr, qr/WARNING/, 'flush() warns while the drain fails');
is(sql('SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letters while full');
is(sql('SELECT sum(hits) FROM c'), 100 * $n, 'nothing applied while Redis refuses the correction');

$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
ok( defined RedisSync::Compare::wait_for(
		sub {
			RedisSync::WB::scard($redis, 'c:dirty') == 0
			  && RedisSync::WB::scard($redis, '{c:dirty}:rs_processing') == 0;
		},
		120),
	'drained once Redis has room');
is(sql('SELECT count(*) FROM c WHERE hits <> 103'), '0', 'every counter is 100 + 3 in the table');
my $bad = $redis->cli('EVAL',
	"local b = 0 for i = 1, tonumber(ARGV[1]) do if redis.call('HGET', 'c:' .. i, 'hits') ~= '103' then b = b + 1 end end return b",
	0, $n);
is($bad, 0, 'and in Redis');
is(sql('SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letters');
done_testing();

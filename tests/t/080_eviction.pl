# Eviction: redis_sync against a real maxmemory Redis with allkeys-lru.
#
# 1. The fence fails safe: Redis evicts version keys ({K}:rs_version) while
#    keeping the data keys (they are read, the version keys are not).  An
#    older write still queued in the outbox (a real earlier state of the rows,
#    with the version of an earlier WAL position) is then delivered: wherever
#    the data key is there but its version is not, the key is dropped (a miss,
#    never the older value); where the data key went with its version, the
#    older write does not recreate it (Redis's evicted_keys moved: writes from
#    before that moment do not create keys); where both are there, the newer
#    value stays.  Counted in redis_sync:evicted:*.  Later writes fill keys.
# 2. Write-behind refuses to drain under a policy that can evict its keys:
#    under allkeys-lru nothing is claimed, the reason is in the log and in
#    stats.last_error; under volatile-lru the drain resumes by itself.
# 3. A Redis user that may not run INFO or CONFIG: write-through works,
#    write-behind refuses (the policy cannot be read) and says why.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time sleep);

my $ROWS = 50;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('eviction', redis => $redis);

# ---------------------------------------------------------------------
# 1. the fence under eviction
# ---------------------------------------------------------------------
$node->safe_psql('postgres', qq{
CREATE TABLE ev (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('ev', key_prefix => 'ev:');
INSERT INTO ev SELECT g, 'old' FROM generate_series(1, $ROWS) g;
});
# the version an outbox entry of this state carries (timeline, server
# epoch, WAL insert position)
my $old_version = $node->safe_psql('postgres', q{
SELECT lpad(upper(to_hex(timeline_id)), 8, '0')
       || lpad(upper(to_hex(pg_read_file('redis_sync.epoch')::text::bigint)), 8, '0')
       || lpad(upper(to_hex((pg_current_wal_insert_lsn() - '0/0')::bigint)), 16, '0')
  FROM pg_control_checkpoint()});
is(length($old_version), 32, 'version of the old state');
$node->safe_psql('postgres', "UPDATE ev SET v = 'new'");
is($redis->cli('HGET', 'ev:7', 'v'), 'new', 'the newer value was pushed');

# squeeze Redis: allkeys-lru, maxmemory just above what it holds; fill junk
# keys while reading data keys 1..40, until some version keys are evicted.
# Redis's LRU clock ticks once a second: first let the keys age two seconds,
# so the version keys (never read) and keys 41..50 (not read either) are the
# oldest; junk keys are always new.
my $deadline = time + 30;
sleep 0.1 while $redis->cli('OBJECT', 'IDLETIME', '{ev:1}:rs_version') < 2 && time < $deadline;
my ($used) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
$redis->cli('CONFIG', 'SET', 'maxmemory-samples', '10');
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
$redis->cli('CONFIG', 'SET', 'maxmemory', $used + 2 * 1024 * 1024);
my $dir = "$PostgreSQL::Test::Utils::tmp_check/eviction";
mkdir $dir or die "$dir: $!";
RedisSync::WB::write_resp("$dir/touch.resp", map { [ 'HGET', "ev:$_", 'v' ] } 1 .. 40);
my $STATE_LUA = q{
local out = {}
for i = 1, tonumber(ARGV[1]) do
  out[i] = redis.call('EXISTS', 'ev:' .. i) .. redis.call('EXISTS', '{ev:' .. i .. '}:rs_version')
end
return table.concat(out, ',')
};
sub key_states
{
	my @s = split /,/, $redis->cli('--raw', 'EVAL', $STATE_LUA, '0', $ROWS);
	return { map { ($_ + 1) => $s[$_] } 0 .. $#s };
}
my $junk = 'x' x 1000;
my ($round, $states) = (0, undef);
$deadline = time + 120;
RedisSync::WB::pipe_run($redis, "$dir/touch.resp", 40);
while (1)
{
	$round++;
	RedisSync::WB::write_resp("$dir/junk.resp",
		map { [ 'SET', "junk:$round:$_", $junk ] } 1 .. 100);
	RedisSync::WB::pipe_run($redis, "$dir/junk.resp", 100);
	RedisSync::WB::pipe_run($redis, "$dir/touch.resp", 40);
	$states = key_states();
	my $orphans = grep { $states->{$_} eq '10' } keys %$states;
	my $gone    = grep { $states->{$_} eq '00' } keys %$states;
	last if ($orphans >= 10 && $gone >= 3) || time > $deadline;
}
# stop evicting, so what follows is deterministic; the keys are classified
# after that: Redis evicts before any command while over maxmemory, reads
# included, so a key read intact during the loop could go before the stop
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
$states = key_states();
my @orphan = sort { $a <=> $b } grep { $states->{$_} eq '10' } keys %$states;
my @intact = grep { $states->{$_} eq '11' } keys %$states;
my @gone   = grep { $states->{$_} eq '00' } keys %$states;
note(sprintf('after %d junk rounds: %d data keys without their version, %d intact, %d evicted',
	$round, scalar @orphan, scalar @intact, scalar @gone));
ok(@orphan >= 1, 'Redis evicted version keys while keeping their data keys');
ok($redis->cli('INFO', 'stats') =~ /evicted_keys:([1-9]\d*)/, "Redis evicted keys ($1)");

# the older state, queued in the outbox as a delayed delivery would be
$node->safe_psql('postgres', qq{
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
SELECT 'ev'::regclass, 'ev:' || g, 'H', jsonb_build_object('id', g::text, 'v', 'old'), '$old_version'
  FROM generate_series(1, $ROWS) g});
$deadline = time + 60;
while ($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox') > 0)
{
	$node->psql('postgres', 'SELECT redis_sync.deliver_outbox()');
	last if time > $deadline;
	sleep 0.05;
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), 0, 'outbox delivered');
my @stale = grep { ($redis->cli('HGET', "ev:$_", 'v') // '') eq 'old' } 1 .. $ROWS;
is(scalar @stale, 0, 'no key holds the older value')
  or diag("stale: @stale");
is(scalar(grep { $redis->cli('EXISTS', "ev:$_") == 0 } @gone), scalar @gone,
	'keys evicted with their version were not recreated by the older write');
is(scalar(grep { $redis->cli('EXISTS', "ev:$_") == 0 } @orphan), scalar @orphan,
	'keys found without their version were dropped (missing, never stale)');
is(scalar(grep { $redis->cli('HGET', "ev:$_", 'v') eq 'new' } @intact), scalar @intact,
	'keys with their version kept the newer value');
my ($ekey) = split /\n/, $redis->cli('--raw', 'KEYS', 'redis_sync:evicted:*');
ok(defined $ekey && $redis->cli('HGET', $ekey, 'dropped') >= @orphan,
	'dropped keys are counted in redis_sync:evicted:*');
ok(@gone == 0 || ($redis->cli('HGET', $ekey, 'skipped') // 0) >= @gone, '... and so are the writes not applied')
  or diag($redis->cli('HGETALL', $ekey));
ok(slurp_file($node->logfile) =~ /dropped \d+ cached keys whose version key was missing/,
	'and logged');
# a later write fills a dropped key again
my $first = $orphan[0];
$node->safe_psql('postgres', "UPDATE ev SET v = 'newest' WHERE id = $first");
is($redis->cli('HGET', "ev:$first", 'v'), 'newest', 'the next write fills a dropped key');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('ev') WHERE problem <> 'missing in cache'"),
	0, 'verify(): no key differs from the table (dropped keys are only missing)')
  or diag($node->safe_psql('postgres', "SELECT key, problem FROM redis_sync.verify('ev') LIMIT 10"));
# a write after the eviction creates a key again (fresh writes pass the floor)
my $g = $gone[0] // $orphan[0];
$node->safe_psql('postgres', "UPDATE ev SET v = 'later' WHERE id = $g");
is($redis->cli('HGET', "ev:$g", 'v'), 'later', 'a write after the eviction creates its key');

# ---------------------------------------------------------------------
# 2. write-behind under an evicting policy
# ---------------------------------------------------------------------
$redis->cli('CONFIG', 'SET', 'maxmemory', 100 * 1024 * 1024);
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
$node->safe_psql('postgres', q{
CREATE TABLE c (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_behind('c', key_prefix => 'c:', counters => '{n}', flush_interval => '200 ms');
});
$redis->cli('HINCRBY', 'c:1', 'n', 5);
$redis->cli('SADD', 'c:dirty', 1);
my $err = '';
$deadline = time + 30;
while ($err !~ /maxmemory-policy/ && time < $deadline)
{
	$node->psql('postgres', "SELECT redis_sync.flush('c')");
	$err = $node->safe_psql('postgres',
		q{SELECT coalesce(last_error, '') FROM redis_sync.stats WHERE "table" = 'c'::regclass});
	sleep 0.1;
}
like($err, qr/write-behind drain refused: Redis maxmemory-policy is allkeys-lru/,
	'allkeys-lru: stats.last_error says why nothing drains');
ok(slurp_file($node->logfile) =~ /write-behind drain refused: Redis maxmemory-policy is allkeys-lru/,
	'... and so does the log');
is($redis->cli('SISMEMBER', 'c:dirty', 1), 1, 'nothing was claimed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM c'), 0, 'nothing was applied');
my ($ret, $out, $stderr) = $node->psql('postgres', "SELECT redis_sync.flush('c')");
like($stderr, qr/could not be drained/, 'flush() warns');

$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'volatile-lru');
my $n = '';
$deadline = time + 30;
while ($n ne '5' && time < $deadline)
{
	$n = $node->safe_psql('postgres', 'SELECT coalesce(max(n), 0) FROM c');
	sleep 0.1;
}
is($n, '5', 'volatile-lru (write-behind keys have no TTL): the drain resumes by itself');
ok(slurp_file($node->logfile) =~ /draining resumes/, 'the log says so');

$node->stop;

# ---------------------------------------------------------------------
# 3. a Redis user that may not run INFO or CONFIG (renamed or forbidden)
# ---------------------------------------------------------------------
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
is($redis->cli('ACL', 'SETUSER', 'limited', 'on', '>pw', '~*', '&*', '+@all', '-info', '-config'), 'OK',
	'ACL user without INFO and CONFIG');
my $node2 = RedisSync::Test::new_node('eviction_acl',
	redis_url => 'redis://limited:pw@127.0.0.1:' . $redis->port . '/1');
$node2->safe_psql('postgres', q{
CREATE TABLE w (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('w', key_prefix => 'w:');
INSERT INTO w VALUES (1, 'one');
});
is($redis->cli('-n', '1', 'HGET', 'w:1', 'v'), 'one', 'write-through works without INFO (a new key is created)');
$node2->safe_psql('postgres', q{
CREATE TABLE c2 (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_behind('c2', key_prefix => 'c2:', flush_interval => '200 ms');
});
$redis->cli('-n', '1', 'HSET', 'c2:1', 'n', 3);
$redis->cli('-n', '1', 'SADD', 'c2:dirty', 1);
$err = '';
$deadline = time + 30;
while ($err !~ /maxmemory-policy/ && time < $deadline)
{
	$node2->psql('postgres', "SELECT redis_sync.flush('c2')");
	$err = $node2->safe_psql('postgres',
		q{SELECT coalesce(last_error, '') FROM redis_sync.stats WHERE "table" = 'c2'::regclass});
	sleep 0.1;
}
like($err, qr/cannot read Redis's maxmemory-policy/,
	'write-behind refuses when the policy cannot be read (fail-safe), and says why');
is($node2->safe_psql('postgres', 'SELECT count(*) FROM c2'), 0, 'nothing applied');
$node2->stop;
done_testing();

# A TRUNCATE (or unsync(purge)) deletes every key under the table's prefix
# a SCAN page at a time (outbox.c rs_purge_send): the committing backend,
# and the worker delivering a queued purge, hold one page of keys, whatever
# the number of keys.  And a TRUNCATE of an eventual table commits while
# Redis is down, its purge queued in the outbox like any other change.
#
# Before (wave 2l and earlier): the purge collected every key under the
# prefix, with its fenced delete, in one pipeline (about 300 bytes a key:
# 30 MB here, gigabytes for tens of millions of cached rows), and its SCAN
# raised the ERROR of an unreachable Redis, so a TRUNCATE of an eventual
# table failed, and rolled back, whenever Redis was down.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('truncate_streamed', redis => $redis,
	extra_conf => "shared_buffers = 16MB\nredis_sync.connect_timeout = '500ms'\n");

my $N = 100000;

# the keys of n rows under prefix, each with its version, as a push leaves them
sub fill
{
	my ($prefix, $n) = @_;
	$redis->cli('EVAL', "for i = 1, $n do redis.call('HSET', '$prefix' .. i, 'v', 'cached'); "
		  . "redis.call('SET', '{$prefix' .. i .. '}:rs_version', '00000000000000000000000000000001') end", '0');
	return;
}

sub count_keys
{
	my ($pattern) = @_;
	my $out = $redis->cli('EVAL',
		"local n, c = 0, '0' repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000, 'TYPE', 'hash'); "
		  . "c = r[1]; n = n + #r[2] until c == '0' return n", '0', $pattern);
	return $out;
}

# 1. the committing backend: a TRUNCATE of 100,000 cached rows
$node->safe_psql('postgres', qq{
CREATE TABLE big (id int PRIMARY KEY, v text);
INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, $N) g;
SELECT redis_sync.write_through('big', key_prefix => 'big:', warm => false);
});
fill('big:', $N);
is(count_keys('big:*'), $N, "$N rows cached");

my $s = RedisSync::Test::session($node);
my $bpid = $s->query('SELECT pg_backend_pid()')->{out};
ok($bpid =~ /^\d+$/, "the session's backend ($bpid)");
# the backend's code and catalogs paged in before the measure
$s->query('SELECT count(*) FROM redis_sync.outbox; SELECT redis_sync.command(\'PING\')');
my $before = RedisSync::Test::vmhwm_kb($bpid);
my $r = $s->query('TRUNCATE big');
is($r->{err}, '', 'TRUNCATE committed');
my $grew_mb = int((RedisSync::Test::vmhwm_kb($bpid) - $before) / 1024);
note("backend peak resident memory: +$grew_mb MB for the purge of $N keys");
cmp_ok($grew_mb, '<', 12, "the TRUNCATE's purge did not hold its $N keys (about 30 MB)");
is(count_keys('big:*'), 0, 'every key of the table is gone');
is($redis->cli('GET', '{big:77}:rs_version') gt '00000000000000000000000000000001' ? 1 : 0, 1,
	'each left a newer tombstone');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), '0', 'nothing queued');

# 2. the worker: the same purge queued (async delivery), delivered by it
$node->safe_psql('postgres', qq{
CREATE TABLE abig (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('abig', key_prefix => 'abig:', warm => false, delivery => 'async');
});
fill('abig:', $N);
is(count_keys('abig:*'), $N, "$N rows of the async table cached");
my $wpid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'redis_sync worker%' LIMIT 1});
ok($wpid =~ /^\d+$/, "the worker's pid ($wpid)");
$before = RedisSync::Test::vmhwm_kb($wpid);
$node->safe_psql('postgres', 'TRUNCATE abig');
ok( defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox') eq '0' }, 120),
	'the worker delivered the purge');
is(count_keys('abig:*'), 0, "every key of the async table is gone");
$grew_mb = int((RedisSync::Test::vmhwm_kb($wpid) - $before) / 1024);
note("worker peak resident memory: +$grew_mb MB for the purge of $N keys");
cmp_ok($grew_mb, '<', 12, "the worker's delivery did not hold the $N keys");

# 3. Redis down: an eventual table's TRUNCATE commits, its purge queued; a
# strict table's fails as its other changes do
$node->safe_psql('postgres', q{
CREATE TABLE ev (id int PRIMARY KEY, v text);
INSERT INTO ev SELECT g, 'e' || g FROM generate_series(1, 3000) g;
SELECT redis_sync.write_through('ev', key_prefix => 'ev:', warm => false);
SELECT redis_sync.warm('ev');
CREATE TABLE st (id int PRIMARY KEY, v text);
INSERT INTO st SELECT g, 's' || g FROM generate_series(1, 10) g;
SELECT redis_sync.write_through('st', key_prefix => 'st:', warm => false, consistency => 'strict');
SELECT redis_sync.warm('st');
});
is(count_keys('ev:*'), 3000, 'the eventual table is cached (three SCAN pages)');
# paused, the worker neither delivers nor refreshes after the restart: what
# removes the keys below is the queued purge, delivered by flush()
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
$redis->stop;

$r = $s->query('TRUNCATE ev');
is($r->{err}, '', 'TRUNCATE of the eventual table committed with Redis down');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ev'), '0', 'its rows are gone');
is($node->safe_psql('postgres', q{SELECT op::text || ' ' || redis_key FROM redis_sync.outbox}),
	'T ev:', 'its purge is queued');
$r = $s->query('TRUNCATE st');
like($r->{err}, qr/could not push changes to Redis/, 'TRUNCATE of the strict table fails');
# its purge could not connect: nothing was sent, so no warning that it was
# (sql/consistency: nor after a purge that found no key)
unlike($r->{err}, qr/was sent to Redis but its transaction rolled back/,
	'without the warning that a purge was sent');
is($node->safe_psql('postgres', 'SELECT count(*) FROM st'), '10', 'and rolls back');

$redis->start;
is(count_keys('ev:*'), 3000, "Redis is back with the snapshot's keys");
$r = $s->query('SELECT redis_sync.flush()');
is($r->{err}, '', 'flush() delivered the queued purge');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), '0', 'nothing queued');
is(count_keys('ev:*'), 0, "every key of the truncated table is gone");
is(count_keys('st:*'), 10, "the strict table's keys stay");

# 4. one pass over the keyspace: a small table's TRUNCATE in a Redis holding
# 20,000 other keys scans the keyspace once, its hashes and strings at the
# same time (SCAN ... TYPE scanned it once per type; count_keys's own SCAN
# calls are counted here as the measure of one pass)
$redis->cli('EVAL', "for i = 1, 20000 do redis.call('SET', 'other:' .. i, 'x') end", '0');
$redis->cli('SADD', 'small:dirty', 'a set under the prefix');
$node->safe_psql('postgres', q{
CREATE TABLE small (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('small', key_prefix => 'small:', warm => false);
INSERT INTO small SELECT g, 'x' FROM generate_series(1, 100) g;
});
$redis->cli('CONFIG', 'RESETSTAT');
is(count_keys('small:*'), 100, 'the small table is cached');
my $one_pass = $redis->cmd_calls('scan');
$redis->cli('CONFIG', 'RESETSTAT');
$r = $s->query('TRUNCATE small');
is($r->{err}, '', 'TRUNCATE of the small table');
my $purge = $redis->cmd_calls('scan');
ok($purge <= $one_pass + 1, "its purge made $purge SCAN calls, one pass ($one_pass)");
is(count_keys('small:*'), 0, 'its keys are gone');
is($redis->cli('SISMEMBER', 'small:dirty', 'a set under the prefix'), '1', 'the set under its prefix stays');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');

$s->quit;
$node->stop;
$redis->stop;
done_testing();

# An eventual write-through transaction whose push Redis refuses for memory
# (maxmemory reached under noeviction: "OOM command not allowed") commits
# and queues its changes in the outbox, which the worker retries until Redis
# has memory.  Meanwhile Redis still held the row's older value: a reader
# after the commit returned (HGET, and get(), which returns the cached row)
# got a value older than the committed one, for as long as Redis stayed
# full.  The refused keys are now dropped, fenced with the transaction's
# version (a delete needs no memory): a miss, never an older value; the
# outbox entry fills them once Redis has memory.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('oom_stale', redis => $redis);

$node->safe_psql('postgres', q{
	CREATE TABLE m (id int PRIMARY KEY, v int, note text);
	INSERT INTO m SELECT g, g, repeat('y', 200) FROM generate_series(1, 2000) g;
	SELECT redis_sync.write_through('m', key_prefix => 'm:', warm => false);
	SELECT redis_sync.warm('m');
	CREATE TABLE i (id int PRIMARY KEY, v int);
	INSERT INTO i SELECT g, g FROM generate_series(1, 10) g;
	SELECT redis_sync.invalidate('i', key_prefix => 'i:');
	SELECT redis_sync.get(NULL::i, '5');
});
is($redis->cli('HGET', 'm:5', 'v'), '5', 'row 5 cached');
is($redis->cli('HGET', 'i:5', 'v'), '5', 'invalidate row 5 cached');
# a field the application keeps in a row's hash (a push writes only its own)
$redis->cli('HSET', 'm:7', 'app_note', 'precious');

# Redis full: maxmemory below what it uses, nothing may be evicted
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
my ($used) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
is($redis->cli('CONFIG', 'SET', 'maxmemory', $used - 100_000), 'OK', 'Redis is full');

# write-through: an UPDATE, a multi-row UPDATE, an INSERT
$node->safe_psql('postgres', 'UPDATE m SET v = -5 WHERE id = 5');
$node->safe_psql('postgres', 'UPDATE m SET v = -v WHERE id BETWEEN 10 AND 19');
$node->safe_psql('postgres', "INSERT INTO m VALUES (5000, 1, 'new')");
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), '>', 0,
	'the refused changes were queued in the outbox');
like($node->safe_psql('postgres', 'SELECT max(last_error) FROM redis_sync.outbox'),
	qr/OOM|memory/, 'Redis refused them for memory');

my $c5 = $redis->cli('HGET', 'm:5', 'v');
ok($c5 eq '' || $c5 eq '-5', "HGET after the commit returned is no older value (got '$c5')");
my @stale = grep { my $c = $redis->cli('HGET', "m:$_", 'v'); $c ne '' && $c ne "-$_" } 10 .. 19;
is(scalar(@stale), 0, 'no key of the multi-row UPDATE holds its older value')
  or diag("stale: @stale");
is($node->safe_psql('postgres', "SELECT v FROM redis_sync.get(NULL::m, '5')"), '-5',
	'get() after the commit returned gives the committed row');
$node->safe_psql('postgres', 'UPDATE m SET v = -7 WHERE id = 7');
my $c7 = $redis->cli('HGET', 'm:7', 'v');
ok($c7 eq '' || $c7 eq '-7', "a row whose hash holds an application's field: no older value (got '$c7')");
is($redis->cli('HGET', 'm:7', 'app_note'), 'precious',
	"the application's field stays: only the table's fields are dropped");

# invalidate: an UPDATE must not leave the cached row.  The worker paused,
# so that its delivery of the queued delete cannot be what removed it
# (helper-117: the drop deleted nothing of an invalidate table's key, whose
# configuration names no fields, and the worker won the race)
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$node->safe_psql('postgres', 'UPDATE i SET v = -5 WHERE id = 5');
my $i5 = $redis->cli('HGET', 'i:5', 'v');
is($i5, '', "invalidate: the updated row's key is gone (got '$i5')");
is($redis->cli('EXISTS', 'i:5'), '0', 'invalidate: the whole key');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');

# memory back: the outbox fills the keys, verify() is clean
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
$node->safe_psql('postgres', 'SELECT redis_sync.flush()');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30), 'outbox delivered');
is($redis->cli('HGET', 'm:5', 'v'), '-5', 'row 5 has its committed value');
is($redis->cli('HGET', 'm:7', 'v'), '-7', 'row 7 too');
is($redis->cli('HGET', 'm:7', 'app_note'), 'precious', "and the application's field is still there");
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('m')"), '0',
	'verify() finds nothing');

done_testing();

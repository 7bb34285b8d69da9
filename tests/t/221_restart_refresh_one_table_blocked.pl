# After a Redis restart from an older snapshot the worker refreshes every
# write-through table's cached keys (worker.c restart_step, rewarm_all).
# The refresh of a table waits at most 2 s for the transactions writing it
# (warm_push.c wait_for_writers) and fails otherwise; one such table (a
# session idle in a transaction that updated it, a long batch job) must not
# keep the other tables' stale keys in the cache, nor the write-behind
# re-seed from happening, and the tables done must not be refreshed again
# at every retry.
#
# Found by the wave 2l review: the restart's work was one unit, retried as a
# whole: the tables after the blocked one (in OID order) kept the
# snapshot's values for as long as the blocking transaction stayed open,
# and each retry pushed every key of the tables before it again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(sleep time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_blocked', redis => $redis);

# three write-through tables, in this OID order: one before the blocked
# table, the blocked table, one after it; and a write-behind counter
$node->safe_psql('postgres', q{
CREATE TABLE first_t (id int PRIMARY KEY, v text);
CREATE TABLE blocked_t (id int PRIMARY KEY, v text);
CREATE TABLE last_t (id int PRIMARY KEY, v text);
INSERT INTO first_t SELECT g, 'old ' || g FROM generate_series(1, 10) g;
INSERT INTO blocked_t SELECT g, 'old ' || g FROM generate_series(1, 10) g;
INSERT INTO last_t SELECT g, 'old ' || g FROM generate_series(1, 10) g;
SELECT redis_sync.write_through('first_t', key_prefix => 'f:', warm => false);
SELECT redis_sync.write_through('blocked_t', key_prefix => 'b:', warm => false);
SELECT redis_sync.write_through('last_t', key_prefix => 'l:', warm => false);
SELECT redis_sync.warm('first_t'), redis_sync.warm('blocked_t'), redis_sync.warm('last_t');
CREATE TABLE wb (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO wb VALUES (1, 42);
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', dirty_set => 'wb-dirty',
                               columns => '{n}', counters => '{n}', flush_interval => '1 h');
});
is($node->safe_psql('postgres',
		q{SELECT 'first_t'::regclass::oid < 'blocked_t'::regclass::oid AND 'blocked_t'::regclass::oid < 'last_t'::regclass::oid}),
	't', 'OID order first_t < blocked_t < last_t');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
$node->safe_psql('postgres', q{
UPDATE first_t SET v = 'new ' || id;
UPDATE blocked_t SET v = 'new ' || id;
UPDATE last_t SET v = 'new ' || id;
});
is($redis->cli('HGET', 'l:1', 'v'), 'new 1', 'the updates reached Redis');

# a session keeps a transaction that wrote blocked_t open
my $s = $node->background_psql('postgres');
$s->query_safe(q{BEGIN; UPDATE blocked_t SET v = 'held' WHERE id = 10;});

$redis->stop;
$redis->start;
is($redis->cli('HGET', 'l:1', 'v'), 'old 1', 'Redis is back with the snapshot');

my $secs = RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'l:1', 'v') eq 'new 1' }, 20);
ok(defined $secs, 'last_t is refreshed while a transaction writing blocked_t stays open')
  or diag(`grep -E 'restart|refresh' ${\ $node->logfile} | tail -20`);
is($redis->cli('HGET', 'f:1', 'v'), 'new 1', 'first_t is refreshed');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 'wb:1') eq '1' }, 20),
	'the write-behind keys are re-seeded meanwhile');
is($redis->cli('HGET', 'b:1', 'v'), 'old 1', 'blocked_t waits for its writer');

# the retries go on while the transaction is open: first_t's keys are not
# pushed again at each of them
my $warmed = sub {
	$node->safe_psql('postgres',
		q{SELECT warmed FROM redis_sync.stats WHERE "table" = 'first_t'::regclass AND policy = 'write_through'});
};
my $before = $warmed->();
sleep 8;
is($warmed->(), $before, 'first_t is not refreshed again while blocked_t is retried');

$s->query_safe('COMMIT');
$s->quit;
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'b:1', 'v') eq 'new 1' }, 90),
	'blocked_t is refreshed once its writer committed');
is($redis->cli('HGET', 'b:10', 'v'), 'held', 'with the committed row');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('blocked_t')}), '0',
	'the cache of blocked_t matches its table');

done_testing();

# Review 4: the worker's warm round reads its queue entry with the
# transaction's snapshot, then locks the table (processing invalidations)
# and loads the table's configuration (config.c) with that older snapshot:
# a new key prefix committed while the lock waited is missed, the rows are
# warmed under the old prefix, and the worker's config cache keeps the old
# prefix as valid for every later warm of the table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('warm_cfg', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO t SELECT g, g FROM generate_series(1, 3) g;
SELECT redis_sync.write_through('t', key_prefix => 'p1:', warm => false);
});
is($redis->cli('EXISTS', 'p1:1'), '0', 'nothing cached yet');

# A reconfigures t (new prefix), holding its lock; meanwhile a warm of t is
# queued (as one queued earlier, still waiting for the worker, would be)
my $a = RedisSync::Test::session($node);
$a->query(q{BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;
SELECT redis_sync.write_through('t', key_prefix => 'p2:', warm => false)});
$node->safe_psql('postgres', "INSERT INTO redis_sync._warm_queue (relid, requested_at) VALUES ('t', clock_timestamp())");
ok($node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE a.backend_type = 'redis_sync worker' AND NOT l.granted
	   AND l.relation = 't'::regclass}),
	'the worker\'s warm waits for its lock on t');
$a->query('COMMIT');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 OR bool_and(state = 'done') FROM redis_sync.warming WHERE "table" = 't'::regclass}),
	'the warm is over');
is($redis->cli('EXISTS', 'p1:1'), '0', 'no row warmed under the old prefix');

# a later warm of t, with no configuration change: where does it write?
$node->safe_psql('postgres', "SELECT redis_sync._warm_schedule('t', true)");
ok($node->poll_query_until('postgres', q{SELECT bool_and(state = 'done') FROM redis_sync.warming WHERE "table" = 't'::regclass}),
	'the second warm is over');
is($redis->cli('EXISTS', 'p2:2'), '1', 'the later warm writes under the new prefix');
is($redis->cli('EXISTS', 'p1:2'), '0', 'and not under the old one');

$a->quit;
$node->stop;
$redis->stop;
done_testing();

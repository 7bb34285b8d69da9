# The background worker does its work with the transaction defaults of a
# maintenance process, not with those a database (or its role) sets for
# client sessions: like autovacuum it runs READ COMMITTED and read-write
# whatever default_transaction_isolation and default_transaction_read_only
# say (worker.c, redis_sync_worker_main).
#
# Before, with ALTER DATABASE ... SET default_transaction_read_only = on
# every drain of a write-behind table failed ("cannot execute INSERT in a
# read-only transaction") and was retried forever, while the outbox was
# still delivered; the refresh after a Redis restart failed the same way
# ("cannot execute SELECT FOR SHARE"), retried a minute later and failed
# again, leaving the keys Redis brought back from its snapshot stale (6 of
# these 15 checks failed); and with default_transaction_isolation = 'serializable'
# (or 'repeatable read') the restart refresh held one snapshot, and so
# vacuum's horizon, across its whole pass, which tests/t/268 checks
# under the default READ COMMITTED only.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use RedisSync::Compare;
use RedisSync::Restart;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('worker_defaults', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '120s'\n");

# the test's own sessions write: they turn the database's default off
my $rw = 'SET default_transaction_read_only = off; ';

$node->safe_psql('postgres', q{
CREATE TABLE wb (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, note text NOT NULL DEFAULT '');
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', dirty_set => 'wb-dirty',
                               flush_interval => '100 ms');
CREATE TABLE wt (id int PRIMARY KEY, v text);
INSERT INTO wt VALUES (1, 'one');
SELECT redis_sync.write_through('wt', key_prefix => 'wt:', delivery => 'async', warm => false);
SELECT redis_sync.warm('wt');
} . RedisSync::Restart::gate_sql(78) . q{
ALTER DATABASE postgres SET default_transaction_read_only = on;
ALTER DATABASE postgres SET default_transaction_isolation = 'serializable';
});

# a new worker, which reads the database's settings at its start
ok(defined RedisSync::WB::restart_worker($node),
	'a new worker started under the database\'s defaults');
is($node->safe_psql('postgres', 'SHOW default_transaction_read_only'), 'on',
	'client sessions of the database are read-only by default');

# write-behind: the drain writes the row
$redis->cli('HSET', 'wb:1', 'n', '5', 'note', 'hello');
$redis->cli('SADD', 'wb-dirty', '1');
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', q{SELECT n || ':' || note FROM wb WHERE id = 1}) eq '5:hello' }, 30),
	'a dirty key is drained into the table');
$redis->cli('HSET', 'wb:1', 'n', '6');
$redis->cli('SADD', 'wb-dirty', '1');
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', q{SELECT n FROM wb WHERE id = 1}) eq '6' }, 30),
	'an update is drained too');
ok(!$node->log_contains('cannot execute INSERT in a read-only transaction')
	  && !$node->log_contains('cannot execute UPDATE in a read-only transaction'),
	'no drain failed for a read-only transaction');

# async delivery
$node->safe_psql('postgres', $rw . q{UPDATE wt SET v = 'uno' WHERE id = 1});
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'wt:1', 'v') // '') eq 'uno' }, 30),
	'an async change is delivered');

# the restart refresh holds no snapshot across its pass (as tests/t/268)
RedisSync::Restart::check_pass_xmin($node, $redis, 78, prefix => $rw);

# the database's defaults still apply to client sessions
is($node->safe_psql('postgres', 'SHOW default_transaction_isolation'), 'serializable',
	'client sessions keep the database\'s isolation default');

done_testing();

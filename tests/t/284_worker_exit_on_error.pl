# The worker catches the errors of its work: a row the drain cannot write
# becomes a dead letter (a subtransaction), a failed round is logged and
# retried.  With exit_on_error = on, set for the database or the role (or
# ALTER SYSTEM), every such error became FATAL instead: the worker exited
# and was started again, met the same row, and exited again, and the
# table's other dirty rows were never drained (async deliveries still got
# through between the restarts).  The worker runs
# with exit_on_error = off whatever is set (worker.c,
# redis_sync_worker_main).  4 of these 7 checks failed before (the log
# showed "FATAL:  insert or update on table "ch" violates foreign key
# constraint" once a second, from a new worker each time).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use RedisSync::Compare;
use Test::More;

$ENV{PGOPTIONS} = '-c exit_on_error=off';

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('worker_exit_on_error', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE par (id int PRIMARY KEY);
INSERT INTO par VALUES (1);
CREATE TABLE ch (id int PRIMARY KEY, par int REFERENCES par, note text);
SELECT redis_sync.write_behind('ch', key_prefix => 'ch:', dirty_set => 'ch-dirty',
                               flush_interval => '100 ms');
CREATE TABLE wt (id int PRIMARY KEY, v text);
INSERT INTO wt VALUES (1, 'one');
SELECT redis_sync.write_through('wt', key_prefix => 'wt:', delivery => 'async');
ALTER DATABASE postgres SET exit_on_error = on;
});

my $pid = RedisSync::WB::restart_worker($node);
ok(defined $pid, 'a new worker started under exit_on_error = on');

$redis->cli('HSET', 'ch:1', 'par', '1', 'note', 'fine');
$redis->cli('HSET', 'ch:2', 'par', '99', 'note', 'orphan');
$redis->cli('SADD', 'ch-dirty', '1', '2');
ok(defined RedisSync::Compare::wait_for(sub {
			$node->safe_psql('postgres',
				q{SELECT count(*) FROM redis_sync.dead_letters WHERE relid = 'ch'::regclass AND member = '2'}) eq '1' }, 30),
	'a row without its parent is a dead letter');
is($node->safe_psql('postgres', q{SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM ch}),
	'1:fine', 'the other row is drained');

$node->safe_psql('postgres', q{UPDATE wt SET v = 'uno' WHERE id = 1});
ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'wt:1', 'v') // '') eq 'uno' }, 30),
	'an async change is delivered');

is($node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'}),
	$pid, 'the worker did not exit');
ok(!$node->log_contains('FATAL:  insert or update on table "ch"'), 'no error was made FATAL');

{
	local $ENV{PGOPTIONS} = '';
	is($node->safe_psql('postgres', 'SHOW exit_on_error'), 'on', 'client sessions keep the database\'s setting');
}

done_testing();

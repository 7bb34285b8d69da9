# Every bound on the code the worker runs as a table's owner
# (redis_sync.drain_timeout, redis_sync.warm_timeout) is a query cancel,
# and PL/pgSQL code can catch a cancel by name and go on.  A trigger of a
# write-behind table owned by a plain role that catches it and sleeps again
# held the worker, and every other table's delivery and drain of the
# database, for as long as it liked.  Now, at twice the step's time, the
# worker ends itself (an error nothing can catch) when the code still
# running is a role's that is not a superuser; the next worker runs no code
# of that role for ten times the time limit (its tables' work is retried
# after), and every other table's work goes on.  Nothing is lost.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('cancel_caught', redis => $redis,
	extra_conf => "redis_sync.drain_timeout = '1s'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('stubborn', returns => 'trigger', return => 'NEW',
		then => q{LOOP
      BEGIN
        PERFORM pg_catalog.pg_sleep(3600);
      EXCEPTION WHEN query_canceled THEN
        NULL;    -- and sleep again
      END;
    END LOOP;}) . q{
CREATE TABLE wb (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
ALTER TABLE wb OWNER TO alice;
CREATE TRIGGER stubborn BEFORE INSERT OR UPDATE ON wb FOR EACH ROW EXECUTE FUNCTION public.stubborn();
INSERT INTO wb VALUES (1, 0);
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', dirty_set => 'wb-dirty', flush_interval => '100 ms');
CREATE ROLE bob;
CREATE TABLE other (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
ALTER TABLE other OWNER TO bob;
INSERT INTO other VALUES (1, 0);
SELECT redis_sync.write_behind('other', key_prefix => 'other:', dirty_set => 'other-dirty', flush_interval => '100 ms');
}
	. RedisSync::OwnerCode::canary_sql());
my $first = RedisSync::WB::wait_worker($node, timeout => 30);
ok(defined $first, 'worker running');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');

# the trigger now catches the drain's cancel and sleeps again
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
$redis->cli('HSET', 'wb:1', 'n', '42');
$redis->cli('SADD', 'wb-dirty', '1');

ok(defined RedisSync::Compare::wait_for(
		sub { $node->log_contains(qr/code run as role \d+ went on past twice its step's time limit \(1000 ms\) after the cancel/) }, 30),
	'the worker ends itself when the code goes on after the cancel');
my $second = RedisSync::WB::wait_worker($node, old_pid => $first, timeout => 30);
ok(defined $second && $second != $first, 'a new worker runs');
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('runs no code of role "alice" until') }, 30),
	'... which runs no code of that role for a while, and says so');

# every other table's work goes on
RedisSync::OwnerCode::canary_set($node, 'after');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'after', 5),
	'an async change of another table is delivered');
$redis->cli('HSET', 'other:1', 'n', '7');
$redis->cli('SADD', 'other-dirty', '1');
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM other') eq '7' }, 5),
	'another owner\'s write-behind table drains');
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('the code of role "alice" is not run until') }, 30),
	'the role\'s table is refused meanwhile, logged');
is($node->safe_psql('postgres', 'SELECT n FROM wb'), '0', '... and not written');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0', '... nor dead-lettered');

# the trigger behaves again: once the quarantine ends the change lands
$node->safe_psql('postgres', 'UPDATE ctl SET block = false');
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM wb') eq '42' }, 60),
	'after the quarantine the table drains, nothing lost');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letter');

done_testing();

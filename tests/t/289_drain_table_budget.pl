# redis_sync.drain_timeout bounds one write-behind batch; a table's drain
# in a round went on batch after batch until a short batch.  A table whose
# owner's trigger takes a little less than the timeout per batch (or any
# table with a large backlog) held the worker, and with it every other
# table's outbox delivery and drain of the database, for as many batches as
# its dirty set holds.  A table's drain in a round now stops after
# drain_timeout (the batches it had already claimed are still applied); the
# next round takes it up after the delivery, and flush() waits for the
# rounds that finish it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('drain_budget', redis => $redis,
	extra_conf => "redis_sync.drain_timeout = '2s'\n");

# more members than a small set's encoding holds: SSCAN then returns about
# COUNT members, and each claim takes one batch
my $N = 1200;
$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('slow_row', returns => 'trigger', return => 'NULL',
		then => q{RAISE LOG 'slow_statement %', TG_OP; PERFORM pg_catalog.pg_sleep(0.2);}) . q{
CREATE TABLE slow (id int PRIMARY KEY, n int);
ALTER TABLE slow OWNER TO alice;
CREATE TRIGGER slow_row BEFORE INSERT OR UPDATE ON slow FOR EACH STATEMENT EXECUTE FUNCTION public.slow_row();
SELECT redis_sync.write_behind('slow', key_prefix => 'slow:', flush_interval => '100 ms', batch_size => 20);
}
	. RedisSync::OwnerCode::canary_sql());
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');

# every batch of 20 members takes 0.4 to 0.6 s (two or three statements),
# under the timeout: 60 of them, half a minute
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
$redis->cli('EVAL', "for i = 1, tonumber(ARGV[1]) do redis.call('HSET', 'slow:' .. i, 'n', i) end return 1",
	'0', $N);
$redis->cli('SADD', 'slow:dirty', 1 .. $N);
ok($node->wait_for_log(qr/LOG:  slow_statement/), 'the drain of the slow table runs');

RedisSync::OwnerCode::canary_set($node, 'after');
my $t0 = time;
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'after', 10),
	'an async change of another table is delivered while the slow table drains');
note(sprintf('delivered after %.1f s', time - $t0));
my $applied = $node->safe_psql('postgres', 'SELECT count(*) FROM slow');
cmp_ok($applied, '<', $N, "... before the slow table's drain ends ($applied of $N rows)");

# flush() returns once every row is applied, over as many rounds as it
# takes, and counts the rows of all of them (a round in progress when it
# asks, not forced, applies up to three drain_timeouts of batches: 300 rows)
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM slow');
my $flushed = $node->safe_psql('postgres', q{SELECT redis_sync.flush('slow')});
cmp_ok($flushed, '>=', $N - $before - 300, "flush() returns the rows of every round it waited for ($flushed)");
is($node->safe_psql('postgres', 'SELECT count(*), sum(n) FROM slow'), "$N|" . ($N * ($N + 1) / 2),
	'every row applied when flush() returns');
is($redis->cli('SCARD', 'slow:dirty') + $redis->cli('SCARD', '{slow:dirty}:rs_processing'), 0,
	'... and acknowledged');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letter');
is($node->safe_psql('postgres', q{SELECT drain_retries FROM redis_sync.stats WHERE "table" = 'slow'::regclass}),
	'0', 'no batch failed or retried');
ok(!$node->log_contains('draining public\.slow failed'), 'no drain failure logged');

done_testing();

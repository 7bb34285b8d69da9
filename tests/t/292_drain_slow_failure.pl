# A write-behind batch cancelled by redis_sync.drain_timeout waits ten
# times the timeout before its retry (TAP 110), so a table whose code
# blocks holds the worker a small part of the time only.  A batch that
# failed otherwise was retried after the usual backoff (100 ms doubling up
# to retry_max_backoff, 2 s): a trigger of a table owned by a plain role
# that sleeps a little less than the timeout and then raises an error the
# drain retries (a serialization failure) held the worker, and with it
# every other table's delivery and drain, nearly all the time.  A batch
# that fails now waits ten times what it ran at least, flush() or not.
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
my $node  = RedisSync::Test::new_node('drain_slow_failure', redis => $redis,
	extra_conf => "redis_sync.drain_timeout = '1s'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('slow_fail', returns => 'trigger', initial => 'true', return => 'NEW',
		then => q{RAISE LOG 'slow_fail attempt'; PERFORM pg_catalog.pg_sleep(0.8);
		          RAISE EXCEPTION 'slow_fail gives up' USING ERRCODE = 'serialization_failure';}) . q{
CREATE TABLE slow (id int PRIMARY KEY, n int);
ALTER TABLE slow OWNER TO alice;
CREATE TRIGGER slow_fail BEFORE INSERT OR UPDATE ON slow FOR EACH ROW EXECUTE FUNCTION public.slow_fail();
SELECT redis_sync.write_behind('slow', key_prefix => 'slow:', flush_interval => '100 ms');
}
	. RedisSync::OwnerCode::canary_sql());
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');

sub attempts
{
	my @a = slurp_file($node->logfile) =~ /LOG:  slow_fail attempt/g;
	return scalar @a;
}

$redis->cli('HSET', 'slow:1', 'n', '5');
$redis->cli('SADD', 'slow:dirty', '1');
ok(defined RedisSync::Compare::wait_for(sub { attempts() >= 1 }, 30), 'the trigger runs');
ok($node->wait_for_log(qr/draining public\.slow failed, retrying in \d+ ms: slow_fail gives up/),
	'the failed batch is logged');
my $first = attempts();
sleep 8;
my $more = attempts() - $first;
cmp_ok($more, '<=', 1, "at most one more attempt in the next 8 s ($more)");
my ($wait) = slurp_file($node->logfile) =~ /draining public\.slow failed, retrying in (\d+) ms/;
cmp_ok($wait, '>=', 7000, "the retry waits ten times what the batch ran ($wait ms)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0',
	'no dead letter (the error is one the drain retries)');

# the trigger lets it through: applied at the retry
$node->safe_psql('postgres', 'UPDATE ctl SET block = false');
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SELECT n FROM slow WHERE id = 1') eq '5' }, 60),
	'the batch is applied once the trigger lets it');

done_testing();

# A fast shutdown waited for the drain batch under way, however slow its
# table's code: up to redis_sync.drain_timeout (a minute by default), far
# past shutdown_drain_timeout, and pg_ctl's own wait.  And the round under
# way went on to its other due tables, a batch each, after the SIGTERM.
# Now the SIGTERM cancels the step under way (as a statement is cancelled),
# the round stops before its next batch or table, and the final round has
# shutdown_drain_timeout, its own batches included.  The cancelled batch is
# rolled back: its keys stay in Redis and are drained after the restart
# (nothing lost).
#
# The same for the worker's other steps, at a pg_terminate_backend(): the
# refresh after a Redis restart starts no other table's part (each ran up
# to warm_timeout: 120 s for three tables before), and a background warm's
# cancelled batch is not counted as the table's failure; the next worker
# goes on with both.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time);

my $SLEEP = 30;    # what the trigger sleeps, in s; drain_timeout stays 60 s

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('shutdown_slow', redis => $redis,
	extra_conf => "redis_sync.shutdown_drain_timeout = '500ms'\ntest.slow = on\n");

$node->safe_psql('postgres', qq{
CREATE TABLE slow (id int PRIMARY KEY, v int NOT NULL);
CREATE FUNCTION slow_trg() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF pg_catalog.current_setting('test.slow', true) = 'on' THEN
		PERFORM pg_catalog.pg_sleep($SLEEP);
	END IF;
	RETURN NEW;
END \$\$;
CREATE TRIGGER slow_trg BEFORE INSERT OR UPDATE ON slow FOR EACH ROW EXECUTE FUNCTION slow_trg();
SELECT redis_sync.write_behind('slow', key_prefix => 'slow:', flush_interval => '100ms');
CREATE TABLE other (id int PRIMARY KEY, v int NOT NULL);
SELECT redis_sync.write_behind('other', key_prefix => 'other:', flush_interval => '100ms');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

$redis->cli('HSET', 'slow:1', 'v', '5');
$redis->cli('SADD', 'slow:dirty', '1');
ok(RedisSync::WB::worker_sleeping($node),
	'the worker is in the slow trigger');
# dirty now: due in the round the SIGTERM interrupts, or in the final one
$redis->cli('HSET', 'other:1', 'v', '7');
$redis->cli('SADD', 'other:dirty', '1');

my $log_offset = -s $node->logfile;
my $t0 = time;
$node->stop('fast');
my $stop = time - $t0;
my $log = substr(slurp_file($node->logfile), $log_offset);
diag(sprintf('pg_ctl stop -m fast during a %d s trigger: %.1f s', $SLEEP, $stop));
cmp_ok($stop, '<', 10, 'the server stops without waiting for the slow batch');
like($log, qr/draining public\.slow stopped: a batch was cancelled at shutdown/,
	'log: the batch was cancelled at shutdown');
like($log, qr/final drain at shutdown applied \d+ rows/, 'the final round ran');
is($redis->cli('HGET', 'slow:1', 'v'), '5', 'the key is still in Redis');

# nothing lost: after the restart, with the trigger fast, the key lands
$node->append_conf('postgresql.conf', "test.slow = off\n");
$node->start;
ok(defined RedisSync::Compare::wait_for(sub {
	$node->safe_psql('postgres', 'SELECT v FROM slow WHERE id = 1') eq '5' }, 60),
	'after the restart the cancelled batch is drained');
ok(defined RedisSync::Compare::wait_for(sub {
	$node->safe_psql('postgres', 'SELECT v FROM other WHERE id = 1') eq '7' }, 60),
	'and the other table\'s key');
is(RedisSync::WB::scard($redis, 'slow:dirty') + RedisSync::WB::scard($redis, RedisSync::WB::processing_set('slow:dirty')),
	0, 'dirty and processing sets empty');
RedisSync::WB::no_dead_letters($node);

# The final round's own batch: a table drained only at shutdown
# (flush_interval 1 h), whose trigger is slow.  Its batch ran up to
# drain_timeout past shutdown_drain_timeout; now it stops at the deadline.
$node->safe_psql('postgres', q{
CREATE TABLE slow2 (id int PRIMARY KEY, v int NOT NULL);
CREATE TRIGGER slow_trg BEFORE INSERT OR UPDATE ON slow2 FOR EACH ROW EXECUTE FUNCTION slow_trg();
SELECT redis_sync.write_behind('slow2', key_prefix => 'slow2:', flush_interval => '1 h');
});
# a forced round with nothing dirty yet: the worker has loaded slow2 (a
# registration during the worker's load of its tables was missed: TAP 309)
is($node->safe_psql('postgres', "SELECT redis_sync.flush('slow2')"), '0', 'slow2 known to the worker');
$node->append_conf('postgresql.conf', "test.slow = on\n");
$node->reload;
$redis->cli('HSET', 'slow2:1', 'v', '9');
$redis->cli('SADD', 'slow2:dirty', '1');
my $rounds = RedisSync::Compare::worker_stat($node, 'worker_rounds');
ok($node->poll_query_until('postgres', "SELECT worker_rounds >= $rounds + 3 FROM redis_sync.worker_stats"),
	'the worker went through three more rounds');
is(RedisSync::WB::scard($redis, 'slow2:dirty'), 1, 'slow2 is left for the final round');

$log_offset = -s $node->logfile;
$t0 = time;
$node->stop('fast');
$stop = time - $t0;
$log = substr(slurp_file($node->logfile), $log_offset);
diag(sprintf('pg_ctl stop -m fast, final round into a %d s trigger: %.1f s', $SLEEP, $stop));
cmp_ok($stop, '<', 10, 'the final round stops its batch at shutdown_drain_timeout');
like($log, qr/draining public\.slow2 stopped: a batch took longer than the time left of redis_sync\.shutdown_drain_timeout/,
	'log: the batch took longer than shutdown_drain_timeout')
  or diag(join("\n", grep { /redis_sync worker/ } split /\n/, $log));

$node->append_conf('postgresql.conf', "test.slow = off\n");
$node->start;
$node->safe_psql('postgres', "SELECT redis_sync.flush('slow2')");
is($node->safe_psql('postgres', 'SELECT v FROM slow2 WHERE id = 1'), '9',
	'after the restart its key is drained');

# The work after a Redis restart, at a SIGTERM outside a server shutdown
# (pg_terminate_backend): its step under way is cancelled, and it starts
# no other table's part (each ran up to warm_timeout, a minute by default);
# the next worker goes on with what is left.
$node->safe_psql('postgres', q{
CREATE TABLE public.flag (pid int);
CREATE FUNCTION slow_check(int) RETURNS boolean LANGUAGE sql AS
$$ SELECT true FROM (SELECT pg_catalog.pg_sleep(CASE WHEN EXISTS (SELECT FROM public.flag
	WHERE pid IS NULL OR pid = pg_catalog.pg_backend_pid()) THEN 60 ELSE 0 END)) s $$;
CREATE DOMAIN slow_int AS int CHECK (public.slow_check(VALUE));
CREATE TABLE ra (id slow_int PRIMARY KEY, v text);
CREATE TABLE rb (id slow_int PRIMARY KEY, v text);
CREATE TABLE rc (id slow_int PRIMARY KEY, v text);
INSERT INTO ra VALUES (1, 'a');
INSERT INTO rb VALUES (1, 'b');
INSERT INTO rc VALUES (1, 'c');
SELECT redis_sync.write_through('ra', key_prefix => 'ra:', warm => false);
SELECT redis_sync.write_through('rb', key_prefix => 'rb:', warm => false);
SELECT redis_sync.write_through('rc', key_prefix => 'rc:', warm => false);
SELECT redis_sync.warm('ra'), redis_sync.warm('rb'), redis_sync.warm('rc');
});
is($redis->cli('SAVE'), 'OK', 'snapshot of the cached tables taken');
$node->safe_psql('postgres', q{INSERT INTO public.flag VALUES (NULL)});
$redis->stop;
$redis->start;
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('Redis at \S+ restarted') }, 30),
	'the worker saw the Redis restart');
ok(RedisSync::WB::worker_sleeping($node),
	'its refresh is in a table\'s slow domain check');
my $old = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'});
# this worker's checks sleep on (the other tables' too, were they run);
# the next worker's do not
$node->safe_psql('postgres', "UPDATE public.flag SET pid = $old");
$t0 = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $old"),
	'the worker exits');
my $exit = time - $t0;
diag(sprintf('worker exit after pg_terminate_backend during the refresh of 3 slow tables: %.1f s', $exit));
cmp_ok($exit, '<', 10, 'without running the other tables\' refresh');
ok($node->log_contains('its refresh was cancelled at shutdown'), 'log: the refresh under way was cancelled at shutdown');
my $new = RedisSync::WB::wait_worker($node, old_pid => $old, timeout => 30);
ok(defined $new, 'a new worker starts');
for my $t (qw(ra rb rc))
{
	my $oid = $node->safe_psql('postgres', "SELECT '$t'::regclass::oid");
	ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains("refreshed \\d+ cached keys of table $oid") }, 90),
		"the next worker refreshes $t");
}

# A background warm's batch at a SIGTERM: cancelled, and not recorded as
# the table's failure (no retry delay, no last_error); the next worker
# warms the table.
$node->safe_psql('postgres', q{
CREATE ROLE alice;
GRANT SELECT ON public.flag TO alice;
CREATE FUNCTION public.slow_pol() RETURNS boolean LANGUAGE sql AS
$$ SELECT true FROM (SELECT pg_catalog.pg_sleep(CASE WHEN EXISTS (SELECT FROM public.flag
	WHERE pid IS NULL OR pid = pg_catalog.pg_backend_pid()) THEN 60 ELSE 0 END)) s $$;
ALTER FUNCTION public.slow_pol() OWNER TO alice;
CREATE TABLE wa (id int PRIMARY KEY, v text);
INSERT INTO wa SELECT g, 'v' || g FROM generate_series(1, 3) g;
ALTER TABLE wa OWNER TO alice;
ALTER TABLE wa ENABLE ROW LEVEL SECURITY;
ALTER TABLE wa FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON wa USING (public.slow_pol());
UPDATE public.flag SET pid = NULL;
SELECT redis_sync.write_through('wa', key_prefix => 'wa:');
});
ok(RedisSync::WB::worker_sleeping($node),
	'the background warm is in the table\'s slow policy');
$old = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'});
$node->safe_psql('postgres', "UPDATE public.flag SET pid = $old");
$t0 = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $old"),
	'the worker exits');
$exit = time - $t0;
diag(sprintf('worker exit after pg_terminate_backend during a background warm: %.1f s', $exit));
cmp_ok($exit, '<', 10, 'without waiting for the warm\'s batch');
ok($node->log_contains('warming table \d+ stopped: a batch was cancelled at shutdown'),
	'log: the warm\'s batch was cancelled at shutdown');
ok($node->poll_query_until('postgres',
	q{SELECT state = 'done' AND last_error IS NULL FROM redis_sync.warming WHERE "table" = 'wa'::regclass}),
	'the next worker warms the table, with no error recorded');
is($redis->cli('HGET', 'wa:3', 'v'), 'v3', 'wa is cached');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM redis_sync.stats WHERE "table" = 'wa'::regclass AND last_error IS NOT NULL}),
	'0', 'no error counted for the table');

$node->stop;
$redis->stop;
done_testing();

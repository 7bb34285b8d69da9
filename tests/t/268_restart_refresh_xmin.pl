# The worker's refresh after a Redis restart is one transaction for every
# table (worker.c refresh_tables, keys_sql.c rs_refresh_cached_keys), and
# each table's part reads with a snapshot of its own.  The transaction's
# own snapshot must not be held across the pass: a pass over a large Redis
# takes minutes, and the worker's xmin would hold back vacuum's horizon for
# all of them.
#
# Two tables whose key column is a domain whose check waits on an advisory
# lock the test holds: the pass blocks in the first table's part; a
# transaction commits; the first part is let go and the pass blocks in the
# second table's part.  The worker's xmin must then be newer than the
# transaction committed between the parts (before, it was the pass's, from
# before it).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_xmin', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '120s'\n");

$node->safe_psql('postgres', q{
CREATE TABLE public.gate_on (on_ boolean);
CREATE FUNCTION public.gate(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT FROM public.gate_on) THEN
		PERFORM pg_catalog.pg_advisory_lock_shared(68, $1);
		PERFORM pg_catalog.pg_advisory_unlock_shared(68, $1);
	END IF;
	RETURN true;
END $$;
CREATE DOMAIN gated_int AS int CHECK (public.gate(VALUE));
CREATE TABLE ga (id gated_int PRIMARY KEY, v text);
INSERT INTO ga VALUES (1, 'a');
CREATE TABLE gb (id gated_int PRIMARY KEY, v text);
INSERT INTO gb VALUES (2, 'b');
SELECT redis_sync.write_through('ga', key_prefix => 'ga:', warm => false);
SELECT redis_sync.write_through('gb', key_prefix => 'gb:', warm => false);
SELECT redis_sync.warm('ga');
SELECT redis_sync.warm('gb');
});
is($redis->cli('HGET', 'gb:2', 'v'), 'b', 'the tables are cached');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');

my $locker = RedisSync::Test::session($node);
$locker->query('SELECT pg_advisory_lock(68, 1), pg_advisory_lock(68, 2)');
$node->safe_psql('postgres', 'INSERT INTO public.gate_on VALUES (true)');

# the advisory lock the worker waits for (its objid: the key value), or ''
my $waiting = q{SELECT coalesce(string_agg(l.objid::text, ','), '')
FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE a.backend_type = 'redis_sync worker' AND l.locktype = 'advisory' AND NOT l.granted};
my $worker_xmin = q{SELECT coalesce(backend_xmin::text, 'none') FROM pg_stat_activity
WHERE backend_type = 'redis_sync worker'};

$redis->stop;
$redis->start;
ok($node->poll_query_until('postgres', "SELECT ($waiting) <> ''"),
	'the refresh pass waits in the first table\'s part');
my $first = $node->safe_psql('postgres', $waiting);
like($first, qr/^[12]$/, "it waits on the gate of key $first");
my $xmin1 = $node->safe_psql('postgres', $worker_xmin);

# a transaction commits while the first part waits
my $committed = $node->safe_psql('postgres', 'SELECT txid_current()');
cmp_ok($xmin1, '<=', $committed, "the worker's xmin ($xmin1) is older than xid $committed");

my $second = $first == 1 ? 2 : 1;
$locker->query("SELECT pg_advisory_unlock(68, $first)");
ok($node->poll_query_until('postgres', "SELECT ($waiting) = '$second'"),
	'the pass waits in the second table\'s part');
my $xmin2 = $node->safe_psql('postgres', $worker_xmin);
like($xmin2, qr/^\d+$/, "the second part holds a snapshot (xmin $xmin2)");
cmp_ok($xmin2, '>', $committed,
	"the second part's xmin ($xmin2) is newer than xid $committed, committed between the parts: no snapshot of the pass is held across it");

$locker->query("SELECT pg_advisory_unlock(68, $second)");
$locker->quit;
for my $t ('ga', 'gb')
{
	my $oid = $node->safe_psql('postgres', "SELECT '$t'::regclass::oid");
	ok(defined RedisSync::Compare::wait_for(
			sub { $node->log_contains("refreshed 1 cached keys of table $oid after") }, 60),
		"$t is refreshed once its part is let go");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('ga')})
	  + $node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('gb')}),
	0, 'cache == tables');

done_testing();

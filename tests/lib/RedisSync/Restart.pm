# Set-ups of the TAP tests of the worker's work after a Redis restart.
#
#   use RedisSync::Restart;
#   RedisSync::Restart::snapshot_tables($node, $redis, [qw(t1 t2)], 60000);
#   $node->safe_psql('postgres', RedisSync::Restart::gate_sql(68));
#   RedisSync::Restart::check_pass_xmin($node, $redis, 68, prefix => $sql);
#
# snapshot_tables(NODE, REDIS, TABLES, ROWS): write-through tables of
# (id int, v text) with ROWS rows 'old <id>', warmed; Redis saves its
# snapshot; then in every table the rows id % 1000 = 1 are updated to
# 'new <id>' and those id % 1000 = 2 deleted, so that a restart from the
# snapshot brings back stale keys (tests/t/266, 277).
#
# The restart refresh's xmin check of tests/t/268 and tests/t/278: two
# write-through tables whose key column is a domain whose check waits on an
# advisory lock the test holds, so that the worker's refresh pass after a
# Redis restart stops in each table's part in turn.
#
# gate_sql(LOCK) creates public.gate_on, public.gate(int), the domain
# gated_int and the tables ga (key 1) and gb (key 2), synced and warmed.
# check_pass_xmin saves Redis's snapshot, restarts Redis with both gates
# closed, lets the first part go once a transaction committed, and checks
# that the second part reads with a snapshot newer than that transaction
# (no snapshot of the pass is held across it), then lets the pass finish
# and waits for both tables' "refreshed" log lines.  prefix: SQL run before
# the test's own writes (e.g. to turn a read-only default off).
package RedisSync::Restart;

use strict;
use warnings;

use RedisSync::Compare;
use RedisSync::Test;
use Test::More;

sub snapshot_tables
{
	my ($node, $redis, $tables, $rows) = @_;
	my $sql = '';
	for my $t (@$tables)
	{
		$sql .= "CREATE TABLE $t (id int PRIMARY KEY, v text);
INSERT INTO $t SELECT g, 'old ' || g FROM generate_series(1, $rows) g;
SELECT redis_sync.write_through('$t', key_prefix => '$t:', warm => false);
SELECT redis_sync.warm('$t');
";
	}
	$node->safe_psql('postgres', $sql);
	is($redis->cli('HGET', "$tables->[-1]:1", 'v'), 'old 1', 'the tables are cached');
	is($redis->cli('SAVE'), 'OK', 'snapshot taken');
	my $changes = '';
	$changes .= "UPDATE $_ SET v = 'new ' || id WHERE id % 1000 = 1; DELETE FROM $_ WHERE id % 1000 = 2;\n"
	  for @$tables;
	$node->safe_psql('postgres', $changes);
	return;
}

sub gate_sql
{
	my ($lock) = @_;
	return qq{
CREATE TABLE public.gate_on (on_ boolean);
CREATE FUNCTION public.gate(int) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN
	IF EXISTS (SELECT FROM public.gate_on) THEN
		PERFORM pg_catalog.pg_advisory_lock_shared($lock, \$1);
		PERFORM pg_catalog.pg_advisory_unlock_shared($lock, \$1);
	END IF;
	RETURN true;
END \$\$;
CREATE DOMAIN gated_int AS int CHECK (public.gate(VALUE));
CREATE TABLE ga (id gated_int PRIMARY KEY, v text);
INSERT INTO ga VALUES (1, 'a');
CREATE TABLE gb (id gated_int PRIMARY KEY, v text);
INSERT INTO gb VALUES (2, 'b');
SELECT redis_sync.write_through('ga', key_prefix => 'ga:', warm => false);
SELECT redis_sync.write_through('gb', key_prefix => 'gb:', warm => false);
SELECT redis_sync.warm('ga');
SELECT redis_sync.warm('gb');
};
}

sub check_pass_xmin
{
	my ($node, $redis, $lock, %opts) = @_;
	my $prefix = $opts{prefix} // '';

	is($redis->cli('HGET', 'gb:2', 'v'), 'b', 'the gated tables are cached');
	is($redis->cli('SAVE'), 'OK', 'snapshot taken');
	my $locker = RedisSync::Test::session($node);
	$locker->query("SELECT pg_advisory_lock($lock, 1), pg_advisory_lock($lock, 2)");
	$node->safe_psql('postgres', $prefix . 'INSERT INTO public.gate_on VALUES (true)');

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
	my $committed = $node->safe_psql('postgres', $prefix . 'SELECT txid_current()');
	cmp_ok($xmin1, '<=', $committed, "the worker's xmin ($xmin1) is older than xid $committed");

	my $second = $first == 1 ? 2 : 1;
	$locker->query("SELECT pg_advisory_unlock($lock, $first)");
	ok($node->poll_query_until('postgres', "SELECT ($waiting) = '$second'"),
		'the pass waits in the second table\'s part');
	my $xmin2 = $node->safe_psql('postgres', $worker_xmin);
	like($xmin2, qr/^\d+$/, "the second part holds a snapshot (xmin $xmin2)");
	cmp_ok($xmin2, '>', $committed,
		"the second part's xmin ($xmin2) is newer than xid $committed, committed between the parts: no snapshot of the pass is held across it"
	);

	$locker->query("SELECT pg_advisory_unlock($lock, $second)");
	$locker->quit;
	for my $t ('ga', 'gb')
	{
		my $oid = $node->safe_psql('postgres', "SELECT '$t'::regclass::oid");
		ok(defined RedisSync::Compare::wait_for(
				sub { $node->log_contains("refreshed 1 cached keys of table $oid after") }, 60),
			"$t is refreshed once its part is let go");
	}
	return;
}

1;

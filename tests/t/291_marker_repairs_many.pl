# The worker's repair of one in-flight marker is bounded by
# redis_sync.warm_timeout and then held for ten times it (TAP 286), but the
# bound is per marker: a sweep that finds many markers of a table whose
# code blocks (a crash with many of its transactions in flight) runs into
# the timeout once per marker, one after the other, and holds the worker,
# with every other table's delivery and drain, for their sum; with ten
# such markers or more it is held nearly all the time.  Not fixed: a hold
# for the whole sweep after one timeout would bound it, but would keep the
# markers of every other table unrepaired (their keys holding what
# transactions that did not commit pushed) while the blocked table's
# markers go through their three attempts each; a hold per table needs the
# tables of each marker before its repair.  The checks that show the hold
# are TODO until then.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('marker_many', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\nredis_sync.warm_timeout = '500ms'\n");

$node->safe_psql('postgres', q{
CREATE ROLE alice;
CREATE TABLE ctl (block bool NOT NULL);
INSERT INTO ctl VALUES (false);
ALTER TABLE ctl OWNER TO alice;
CREATE FUNCTION public.gate() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT block FROM public.ctl) THEN PERFORM pg_catalog.pg_sleep(3600); END IF;
  RETURN true;
END $$;
ALTER FUNCTION public.gate() OWNER TO alice;
CREATE TABLE ti (id int PRIMARY KEY, v text);
ALTER TABLE ti OWNER TO alice;
ALTER TABLE ti ENABLE ROW LEVEL SECURITY;
ALTER TABLE ti FORCE ROW LEVEL SECURITY;
CREATE POLICY gated ON ti USING (public.gate());
SELECT redis_sync.write_through('ti', key_prefix => 'ti:');
INSERT INTO ti SELECT g, 'committed' FROM generate_series(1, 12) g;
CREATE TABLE q (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('q', key_prefix => 'q:', delivery => 'async');
INSERT INTO q VALUES (1, 'before');
});
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'q:1', 'v') eq 'before' }, 20),
	'async table delivered');
my $ti     = $node->safe_psql('postgres', q{SELECT 'ti'::regclass::oid});
my $marker = $node->safe_psql('postgres',
	"SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()");

sub timeouts
{
	my @t = slurp_file($node->logfile) =~
	  /the repair of in-flight marker \S+ took longer than redis_sync\.warm_timeout/g;
	return scalar @t;
}

# twelve markers of the blocked table (an earlier server incarnation: each
# is repaired), twelve timeouts of 0.5 s in one sweep
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
$redis->cli('HSET', $marker, map { (100 + $_) . ':1:0:0', qq{[[$ti,"$_"]]} } 1 .. 12);
ok(defined RedisSync::Compare::wait_for(sub { timeouts() >= 1 }, 30), 'a repair runs into warm_timeout');

$node->safe_psql('postgres', q{UPDATE q SET v = 'after' WHERE id = 1});
my $t0 = time;
TODO:
{
	local $TODO = 'each marker of a blocked table costs warm_timeout in one sweep';

	ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'q:1', 'v') eq 'after' }, 2),
		'an async change of another table is delivered within 2 s');
	cmp_ok(timeouts(), '<=', 2, 'one sweep runs into the timeout once or twice, not once per marker');
}
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'q:1', 'v') eq 'after' }, 30),
	'the async change is delivered once the sweep ends');
note(sprintf('delivered after %.1f s, %d timeouts', time - $t0, timeouts()));

done_testing();

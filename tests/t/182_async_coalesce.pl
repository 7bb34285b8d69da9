# redis_sync.outbox_coalesce engages only while several sessions commit
# async changes at once.  With it at 1 s (its maximum, to make a wrong
# engagement obvious) and naptime 1 h:
# - one session committing 20 times, each time waiting until its change
#   reached Redis, takes well under 20 s (delayed by the interval, each
#   commit would wait about 1 s);
# - four sessions committing 800 changes at once are delivered in far
#   fewer worker rounds than commits (coalesced), nothing is lost and every
#   key ends at its newest value (cache matches the table);
# - one session committing 2000 changes as fast as it can is delivered in
#   at most one worker round per millisecond (paced), nothing lost.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('asynccoal', redis => $redis,
	extra_conf => "redis_sync.naptime = '1h'\nredis_sync.outbox_coalesce = '1s'\n");

my $t = RedisSync::Synced::synced_table($node, 'c', columns => 'id int PRIMARY KEY, v int',
	with => "delivery => 'async'", fill => 'SELECT g, 0 FROM generate_series(1, 100) g');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'initial rows delivered');

# one session: every commit is delivered at once
my $s = $node->background_psql('postgres');
my $start = time;
my $late = 0;
for my $i (1 .. 20)
{
	$s->query_safe("UPDATE c SET v = $i WHERE id = 1");
	$late++
	  unless defined RedisSync::Compare::wait_for(
		sub { $redis->cli('HGET', 'c:1', 'v') eq "$i" }, 30);
}
$s->quit;
my $took = time - $start;
is($late, 0, 'each commit of one session reached Redis');
cmp_ok($took, '<', 10, "one session's 20 commits were not held back (took ${took}s)");

# four sessions at once: coalesced, nothing lost
my $script = PostgreSQL::Test::Utils::tempdir() . '/u.sql';
open my $fh, '>', $script or die;
print $fh "\\set id random(1, 100)\nUPDATE c SET v = v + 1 WHERE id = :id;\n";
close $fh;
# pgbench with @opts and the script; waits until the outbox is empty and
# returns the worker rounds and the milliseconds the burst and its delivery took
sub burst
{
	my ($what, @opts) = @_;
	my $rounds0 = RedisSync::Compare::worker_stat($node, 'worker_rounds');
	my $start   = time;
	$node->command_ok([ 'pgbench', '-n', @opts, '-f', $script, '-d', $node->connstr('postgres') ],
		"$what committed");
	ok(defined RedisSync::Compare::wait_outbox_empty($node, 60), "every change of $what delivered");
	return (RedisSync::Compare::worker_stat($node, 'worker_rounds') - $rounds0,
		int((time - $start) * 1000));
}

my ($rounds) = burst('four sessions', '-c', '4', '-j', '4', '-t', '200');
cmp_ok($rounds, '<', 200, "800 commits of four sessions delivered in $rounds worker rounds");
$t->wait_cache_matches($redis, name => 'cache matches the table');

# one session committing about twice per millisecond (pgbench -R 2000):
# its deliveries are paced, at most one per millisecond (pace_wait), so the
# worker's rounds stay under the milliseconds the burst and its delivery
# took (delivering each commit in its own round, as a worker faster than
# the commits did before, exceeds that); nothing is lost.  outbox_coalesce at 1 ms: its own wait (several
# sessions) must not be what holds the rounds down.
$node->safe_psql('postgres', "ALTER SYSTEM SET redis_sync.outbox_coalesce = '1ms'; SELECT pg_reload_conf()");
# a commit delivered after the reload: the worker has read the new setting
$node->safe_psql('postgres', "UPDATE c SET v = -1 WHERE id = 2");
ok(defined RedisSync::Compare::wait_for(
		sub { $redis->cli('HGET', 'c:2', 'v') eq '-1' }, 30),
	'a commit after the reload delivered');
($rounds, my $ms) = burst('one session', '-c', '1', '-t', '2000', '-R', '2000');
cmp_ok($rounds, '<=', $ms + 2,
	"2000 commits of one session delivered in $rounds worker rounds, at most one per ms ($ms ms)");
$t->wait_cache_matches($redis, name => 'cache matches the table after one session');

done_testing();

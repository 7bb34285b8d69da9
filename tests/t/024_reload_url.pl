# Changing redis_sync.redis_url with a configuration reload moves everything
# to the new Redis: commits of new sessions and of sessions that were already
# open push to the second instance, and the background worker delivers the
# outbox (async tables) there.  Nothing written after the switch reaches the
# first instance.  rewarm_on_restart is off so that the worker does not copy
# the tables into the new instance on its own (the new run_id looks like a
# restart) and every key in Redis #2 must come from a push or a delivery.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;

my $r1   = RedisSync::Test::start_redis();
my $r2   = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node(
	'reload',
	redis      => $r1,
	extra_conf => "redis_sync.rewarm_on_restart = off\n");

my %tables = (
	t => RedisSync::Synced::synced_table($node, 't',
		fill => "SELECT g, g, 'before' FROM generate_series(1, 10) g"),
	a => RedisSync::Synced::synced_table($node, 'a', with => "delivery => 'async'",
		fill => "SELECT g, g, 'before' FROM generate_series(1, 10) g"));
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'async rows delivered');
is($r1->cli('HGET', 't:1', 'note'), 'before', 'sync row in Redis #1');
is($r1->cli('HGET', 'a:1', 'note'), 'before', 'async row in Redis #1');
is($r2->cli('DBSIZE'), '0', 'Redis #2 empty');

sub run_id
{
	my ($r) = @_;
	my ($id) = $r->cli('INFO', 'server') =~ /run_id:(\w+)/;
	return $id;
}
ok( $node->poll_query_until('postgres',
		"SELECT redis_run_id = '" . run_id($r1) . "' FROM redis_sync.worker_stats"),
	'worker talks to Redis #1');

my $old = RedisSync::Test::session($node);    # opened before the switch
is($old->query("INSERT INTO t VALUES (100, 100, 'old session, before')")->{err},
	'', 'old session writes before the switch');

# switch to Redis #2
my $url2 = $r2->url;
$node->safe_psql('postgres', "ALTER SYSTEM SET redis_sync.redis_url = '$url2'");
$node->reload;
ok( $node->poll_query_until('postgres',
		"SELECT current_setting('redis_sync.redis_url') = '$url2'"),
	'new sessions see the new redis_url');
ok( $node->poll_query_until('postgres',
		"SELECT redis_run_id = '" . run_id($r2) . "' FROM redis_sync.worker_stats"),
	'worker reloaded and probes Redis #2');

# new session, sync table
$node->safe_psql('postgres',
	"INSERT INTO t SELECT g, g, 'after' FROM generate_series(11, 20) g; "
	  . "UPDATE t SET note = 'after' WHERE id = 1");
is($r2->cli('HGET', 't:11', 'note'), 'after', 'new session: inserted row in Redis #2');
is($r2->cli('HGET', 't:1', 'note'), 'after', 'new session: updated row in Redis #2');
is($r1->cli('EXISTS', 't:11'), '0', '... and not in Redis #1');
is($r1->cli('HGET', 't:1', 'note'), 'before', 'Redis #1 keeps the old value');

# the session opened before the switch follows after its next command
my $r = $old->query("INSERT INTO t VALUES (101, 101, 'old session, after')");
is($r->{err}, '', 'old session writes after the switch');
is($r2->cli('HGET', 't:101', 'note'), 'old session, after', 'old session: row in Redis #2');
is($r1->cli('EXISTS', 't:101'), '0', '... and not in Redis #1');

# async table: the worker delivers to Redis #2
$node->safe_psql('postgres',
	"INSERT INTO a SELECT g, g, 'after' FROM generate_series(11, 20) g; "
	  . "UPDATE a SET note = 'after' WHERE id = 2; DELETE FROM a WHERE id = 3");
ok( defined RedisSync::Compare::wait_for(
		sub {
			$r2->cli('HGET', 'a:20', 'note') eq 'after'
			  && $r2->cli('HGET', 'a:2', 'note') eq 'after';
		},
		30),
	'async rows delivered to Redis #2 by the worker');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'outbox empty');
is($r1->cli('EXISTS', 'a:20'), '0', 'async row not in Redis #1');
is($r1->cli('HGET', 'a:2', 'note'), 'before', 'Redis #1 keeps the old async value');
is($r1->cli('EXISTS', 'a:3'), '1', 'the delete did not reach Redis #1');
is($r2->cli('EXISTS', '{a:3}:rs_version'), '1', 'the delete reached Redis #2 (tombstone)');

# Redis #2 holds exactly the keys written after the switch
my @keys2 = sort grep { !/rs_version|^redis_sync:/ } split /\n/, $r2->cli('KEYS', '*');
is( "@keys2",
	join(' ', sort(map("a:$_", 2, 11 .. 20), map("t:$_", 1, 11 .. 20, 101))),
	'Redis #2 holds exactly the keys changed after the switch');

# and a full warm() into Redis #2 gives cache == table
$node->safe_psql('postgres', "SELECT redis_sync.warm('t'), redis_sync.warm('a')");
for my $tab ('t', 'a')
{
	$tables{$tab}->cache_matches($r2, "table $tab: Redis #2 == table after warm()");
}

$old->quit;
$node->stop;
done_testing();

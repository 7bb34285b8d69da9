# Redis Cluster variant of tests/t/342_wb_counter_correct_restart: a counter
# key created from nothing (no {K}:rs_seeded marker) takes the increment
# path; the drain adds its value to the table's and, before it commits,
# corrects Redis with HINCRBY K field <table's previous value>.  Here the
# master holding the key (not the dirty set's master) restarts empty while
# that batch is written (a trigger waits on an advisory lock the test
# holds).  The correction then runs on the restarted, empty node: it
# creates the key at the table's previous value alone (97) and marks it
# seeded, while the batch commits 100.  On a single Redis the batch is
# rolled back (README "Counters and Redis losing its data"); on a cluster
# the check was skipped, so Redis and the table disagree for good and the
# next increment's absolute drain sets the counter back (README guarantee:
# counters never go backwards when Redis loses its data).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('clwbcorrect', redis_url => $c->url);
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $any = $c->any_port;

# the dirty set's master, and a row whose key lives on another master
my ($dmaster) = grep { $c->node_cli($_, 'TYPE', 'stats:dirty') !~ /MOVED/ } $c->master_ports;
my ($id, $kmaster);
for my $i (1 .. 200)
{
	my ($m) = grep { $c->node_cli($_, 'TYPE', "stats:$i") !~ /MOVED/ } $c->master_ports;
	if ($m != $dmaster) { ($id, $kmaster) = ($i, $m); last; }
}
ok(defined $id, "key stats:$id is on master $kmaster, the dirty set on $dmaster");

sql(qq{
CREATE TABLE stats (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0, title text);
INSERT INTO stats VALUES ($id, 97, 'answer');
CREATE FUNCTION public.stats_wait() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(4242);
  RETURN NEW;
END \$\$;
CREATE TRIGGER stats_wait BEFORE UPDATE ON stats FOR EACH ROW EXECUTE FUNCTION public.stats_wait();
SELECT redis_sync.write_behind('stats', key_prefix => 'stats:', counters => '{view_count}',
                               flush_interval => '1 h');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

my $holder = RedisSync::Test::session($node);
$holder->query('SELECT pg_advisory_lock(4242)');

# the application creates the key from nothing: three increments
for (1 .. 3)
{
	$c->cli($any, 'HINCRBY', "stats:$id", 'view_count', 1);
	$c->cli($any, 'SADD', 'stats:dirty', $id);
}
# the drain, asked for by a flush() in the background, claims the member
my $bg = RedisSync::Test::session($node);
$bg->start_query("SELECT redis_sync.flush('stats')");

ok( defined RedisSync::Compare::wait_for(
		sub {
			sql(q{SELECT count(*) FROM pg_stat_activity
			      WHERE backend_type LIKE 'redis_sync%' AND wait_event = 'advisory'}) > 0;
		},
		60),
	'the drain batch waits in the table trigger');

# the key's master loses its data under the batch
$c->node($kmaster)->stop;
$c->node($kmaster)->start;
$c->wait_ok;
is($c->node_cli($kmaster, 'EXISTS', "stats:$id"), '0', 'the restarted master is empty');

$holder->query('SELECT pg_advisory_unlock(4242)');
$bg->finish_query;

ok( defined RedisSync::Compare::wait_for(
		sub {
			$node->psql('postgres', 'SELECT redis_sync.flush()');
			$c->cli($any, 'EXISTS', "stats:$id") eq '1'
			  && sql(q{SELECT count(*) FROM pg_stat_activity
			           WHERE backend_type LIKE 'redis_sync%' AND wait_event = 'advisory'}) == 0;
		},
		60),
	'the key is back in Redis');
note('before flush: table ' . sql("SELECT view_count FROM stats WHERE id = $id") . ' stats: '
	. sql("SELECT row_to_json(s) FROM redis_sync.stats s") . ' last_error: ' . sql('SELECT last_error FROM redis_sync.worker_stats'));
sql('SELECT redis_sync.flush()');
my $table = sql("SELECT view_count FROM stats WHERE id = $id");
my $cache = $c->cli($any, 'HGET', "stats:$id", 'view_count');
note("table $table, Redis $cache");
is($cache, $table, 'Redis holds the counter the table committed');

$c->cli($any, 'HINCRBY', "stats:$id", 'view_count', 1);
$c->cli($any, 'SADD', 'stats:dirty', $id);
RedisSync::Compare::wait_for(
	sub {
		$node->psql('postgres', 'SELECT redis_sync.flush()');
		$c->cli($any, 'SCARD', 'stats:dirty') eq '0'
		  && $c->cli($any, 'SCARD', '{stats:dirty}:rs_processing') eq '0'
		  && sql("SELECT view_count FROM stats WHERE id = $id") != $table;
	},
	90);
my $after = sql("SELECT view_count FROM stats WHERE id = $id");
is($after, $table + 1, 'the next increment adds one to the table\'s counter (never backwards)');
is($c->cli($any, 'HGET', "stats:$id", 'view_count'), $after, 'Redis equals the table');

$holder->quit;
$bg->quit;
$node->stop;
done_testing();

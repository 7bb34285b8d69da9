# Redis Cluster scaled out: a master added (add-node) and slots resharded to
# it after a session loaded its slot map.  The session's TRUNCATE of a
# write-through table purges the table's keys by a SCAN of "every master of
# the current map" -- the session's map, which still lists three masters and
# is not reloaded first (no command of the purge is redirected).  The keys
# the reshard moved to the new master survive the TRUNCATE: Redis keeps rows
# the table no longer has.  Not a SCAN racing a reshard (a documented
# limit): the reshard ended before the TRUNCATE began.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;
use Time::HiRes qw(time sleep);

my $ROWS = 3000;
my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $seed = ($c->master_ports)[0];

my $node = RedisSync::Test::new_node('cltrunc', redis_url => $c->url);
sub sq { return $node->safe_psql('postgres', $_[0]); }
sq(qq{
CREATE TABLE tr (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('tr', key_prefix => 'tr:', warm => false);
INSERT INTO tr SELECT g, 'v' || g FROM generate_series(1, $ROWS) g;
});

# a session that loads its slot map now (three masters)
my $s = RedisSync::Test::session($node);
is($s->query("UPDATE tr SET v = 'x' WHERE id <= 10")->{err}, '', 'session pushed (map loaded)');

# scale out: the new node joins as a master and gets 4000 slots
my ($np, $nid) = $c->add_master;
my $deadline = time + 60;
my $out = '';
until ($c->node_cli($np, 'DBSIZE') > 0 || time > $deadline)
{
	$out = $c->node_cli($seed, '--cluster', 'reshard', "127.0.0.1:$seed", '--cluster-from', 'all',
		'--cluster-to', $nid, '--cluster-slots', '4000', '--cluster-yes');
	$c->wait_ok;
	sleep 0.2 unless $c->node_cli($np, 'DBSIZE') > 0;    # the nodes' views settle; tried again
}
note("reshard: $out");
my $on_new = $c->node_cli($np, 'DBSIZE');
cmp_ok($on_new, '>', 0, "the reshard moved keys to the new master ($on_new)");
note('session map: ' . $s->query('SELECT node, role, slots FROM redis_sync.cluster_nodes()')->{out});

# the same session truncates the table
is($s->query('TRUNCATE tr')->{err}, '', 'TRUNCATE');
sq('SELECT redis_sync.flush()');

my $left = 0;
for my $p ($c->master_ports)
{
	my @k = grep { /^tr:/ } split /\n/, $c->node_cli($p, '--scan', '--pattern', 'tr:*');
	note("master $p: " . scalar(@k) . ' tr: keys left');
	$left += @k;
}
is($left, 0, 'no key of the truncated table is left on any master');
is(sq("SELECT count(*) FROM redis_sync.verify('tr')"), '0', 'verify() clean after TRUNCATE');

done_testing();

# Redis Cluster announcing hostnames (Redis 7: cluster-announce-hostname,
# cluster-preferred-endpoint-type hostname): CLUSTER SLOTS names each
# master by its hostname, CLUSTER NODES by "ip:port@cport,hostname".  The
# masters that own no slot, which the map takes from CLUSTER NODES
# (cluster.c rs_cluster_add_slotless_masters), must not add every slot
# owner a second time under its IP (a scan of "every master" would visit
# each twice, and by an address the client may not be meant to use: TLS
# certificates name the host, NAT), and a slotless master is named as the
# slot owners are (its hostname).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::Compare;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my ($np, $nid) = $c->add_master;
ok($np, 'a fourth master, with no slot');
my @all = $c->ports;

for my $p (@all)
{
	is($c->node_cli($p, 'CONFIG', 'SET', 'cluster-announce-hostname', 'localhost'), 'OK', "hostname of $p");
	is($c->node_cli($p, 'CONFIG', 'SET', 'cluster-preferred-endpoint-type', 'hostname'), 'OK', "endpoint type of $p");
}
# every node knows every other's hostname (gossip)
ok(defined RedisSync::Compare::wait_for(sub {
	for my $p (@all)
	{
		my $slots = $c->node_cli($p, 'CLUSTER', 'SLOTS');
		# the endpoints (the metadata after them names the IP)
		return 0 if (() = $slots =~ /^localhost$/mg) != 3;
		my @lines = split /\n/, $c->node_cli($p, 'CLUSTER', 'NODES');
		return 0 if grep({ !/,localhost / } @lines) || @lines != 4;
	}
	return 1;
}, 30), 'CLUSTER SLOTS names the masters by hostname, CLUSTER NODES by ip and hostname');

my $node = RedisSync::Test::new_node('clhostname', redis_url => $c->url);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE h (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('h', key_prefix => 'h:', warm => false);
INSERT INTO h SELECT g, 'v' || g FROM generate_series(1, 30) g;
});
is(sq(q{SELECT string_agg(node, ',' ORDER BY node) FROM redis_sync.cluster_nodes() WHERE role = 'master'}),
	join(',', sort map { "localhost:$_" } @all),
	'four masters, each once, by hostname (the slotless one too)');
is(sq(q{SELECT sum(slots) FROM redis_sync.cluster_nodes()}), '16384', 'every slot once');
# in the TRUNCATE's session: its scan visited every master once
is(sq(q{TRUNCATE h; SELECT string_agg(node || ' ' || connected, ',' ORDER BY node) FROM redis_sync.cluster_nodes() WHERE role = 'master'}),
	join(',', sort map { "localhost:$_ true" } @all),
	'the TRUNCATE\'s scan connected to every master by hostname, to no IP');
my $left = 0;
$left += $c->node_cli($_, 'EVAL', "return #redis.call('KEYS', 'h:[0-9]*')", '0') for @all;
is($left, 0, 'the TRUNCATE removed every row');

done_testing();

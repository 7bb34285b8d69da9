# Redis Cluster with an ACL user that may not run CLUSTER NODES: the map is
# CLUSTER SLOTS's (the slotless masters are not known, as documented), the
# refused CLUSTER NODES leaves the connection usable, and the work goes on
# (redis_cluster.c load_map_from: best effort).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::Compare;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my @masters = $c->master_ports;
my ($np) = $c->add_master;
for my $p (@masters, $np)
{
	is($c->node_cli($p, 'ACL', 'SETUSER', 'app', 'on', '>apppw', '~*', '&*', '+@all', '-cluster|nodes'),
		'OK', "ACL user app on $p");
}
like($c->node_cli($masters[0], '--user', 'app', '--pass', 'apppw', '--no-auth-warning', 'CLUSTER', 'NODES'),
	qr/NOPERM/, 'the user may not run CLUSTER NODES');

my $url = 'redis://app:apppw@' . join(',', map { "127.0.0.1:$_" } @masters) . '/0';
my $node = RedisSync::Test::new_node('clnodesdenied', redis_url => $url);
sub sq { return $node->safe_psql('postgres', $_[0]); }

is(sq("SELECT count(*) FROM redis_sync.cluster_nodes() WHERE role = 'master'"), '3',
	'the map: the slot owners');
sq(q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:', consistency => 'strict', warm => false);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g;
UPDATE t SET v = v || 'x' WHERE id <= 20;
});
is($c->cli($masters[0], 'HGET', 't:7', 'v'), 'v7x', 'writes are cached');
is(sq(q{TRUNCATE t; SELECT count(*) FROM redis_sync.cluster_nodes() WHERE role = 'master' AND connected}),
	'3', 'a TRUNCATE in a session that reloaded its map (CLUSTER NODES refused)');
my $left = 0;
$left += $c->node_cli($_, 'EVAL', "return #redis.call('KEYS', 't:[0-9]*')", '0') for @masters;
is($left, 0, 'no row left');
# the worker's map, reloaded every 5 s, with CLUSTER NODES refused each time
sleep 6;
like(sq(q{SELECT cluster::text FROM redis_sync.worker_stats}), qr/"masters": 3/, 'the worker\'s map');
my $log = slurp_file($node->logfile);
unlike($log, qr/CLUSTER NODES|NOPERM/, 'nothing logged of the refusal');

done_testing();

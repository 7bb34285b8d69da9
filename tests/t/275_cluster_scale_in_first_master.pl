# Redis Cluster scale-in of the first master A, where a master that loses
# its last slot stays a master (Redis 6; Redis 7 with
# cluster-allow-replica-migration no): a reshard moves every slot of A
# away, then redis-cli --cluster del-node removes it (CLUSTER FORGET on the
# others, CLUSTER RESET SOFT on A, which runs on, in no cluster).  A stays
# in the map as a slotless master (CLUSTER NODES), the first in a
# session's node table, with a live connection: the next map reload asked
# it first and took its empty CLUSTER SLOTS, whose map had one master (A)
# and no slot owner; a TRUNCATE then scanned only A and left every row
# cached (redis_cluster.c load_map_from).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
is($c->node_cli($_, 'CONFIG', 'SET', 'cluster-allow-replica-migration', 'no'), 'OK', "no replica migration on $_")
  for $c->ports;
my @masters = $c->master_ports;
my ($pa) = grep { $c->node_cli($_, 'CLUSTER', 'NODES') =~ /myself,master(?: \S+){5} 0-/ } @masters;
ok($pa, "A ($pa) owns slot 0");
my ($pb) = grep { $_ != $pa } @masters;
my @rest = grep { $_ != $pa } @masters;

my $node = RedisSync::Test::new_node('clscalein', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '3s'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }
sq(q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:', warm => false);
CREATE TABLE u (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('u', key_prefix => 'u:', warm => false);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 30) g;
});
my $s = RedisSync::Test::session($node);
is($s->query(q{TRUNCATE u; SELECT count(*) FROM redis_sync.cluster_nodes() WHERE role = 'master' AND connected})->{out},
	'3', 'the session is connected to the three masters');

# every slot of A to B
my $aid = $c->node_id($pa);
my $out = $c->node_cli($pb, '--cluster', 'reshard', "127.0.0.1:$pb", '--cluster-from', $aid,
	'--cluster-to', $c->node_id($pb), '--cluster-slots', '5461', '--cluster-yes');
is($c->node_cli($pa, 'CLUSTER', 'COUNTKEYSINSLOT', '0') . ' ' . ($c->node_cli($pa, 'CLUSTER', 'NODES') =~ /myself,master/ ? 'master' : 'not master'),
	'0 master', 'A holds nothing and is still a master') or diag($out);
is($s->query(q{TRUNCATE u; SELECT count(*) FROM redis_sync.cluster_nodes() WHERE role = 'master'})->{out},
	'3', 'the session\'s map: A, slotless, and the two others');

# del-node A
$out = $c->node_cli($pb, '--cluster', 'del-node', "127.0.0.1:$pb", $aid);
note("del-node: $out");
like($c->node_cli($pa, 'CLUSTER', 'INFO'), qr/cluster_known_nodes:1\b/, 'A is reset, in no cluster');

my $r = $s->query('TRUNCATE t');
is($r->{err}, '', 'the TRUNCATE succeeds');
my $left = 0;
$left += $c->node_cli($_, 'EVAL', "return #redis.call('KEYS', 't:[0-9]*')", '0') for @rest;
is($left, 0, 'the TRUNCATE removed every row');
is($s->query(q{SELECT string_agg(node, ',' ORDER BY node) FROM redis_sync.cluster_nodes() WHERE role = 'master'})->{out},
	join(',', sort map { "127.0.0.1:$_" } @rest), 'the map has the two masters left');
$r = $s->query(q{INSERT INTO t VALUES (100, 'hundred')});
is($r->{err}, '', 'a write goes through');
is($c->cli($pb, 'HGET', 't:100', 'v'), 'hundred', 'and is cached');
$s->quit;

done_testing();

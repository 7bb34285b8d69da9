# Redis Cluster: a master that leaves the cluster (its slots resharded away,
# then del-node) is no longer connected from a backend that used it: its
# connection is closed when a map reload no longer lists it (before, the
# backend kept it open for its lifetime).  Pushes keep working.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my @masters = $c->master_ports;
is(scalar(@masters), 3, 'three masters');

# one node, no redirection following
sub ncli { return $c->node_cli(@_); }

my $node = RedisSync::Test::new_node('clrm', redis_url => $c->url);
$node->safe_psql('postgres', q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:', warm => false);
});

my $s = RedisSync::Test::session($node);
is($s->query("INSERT INTO t SELECT g, 'a' || g FROM generate_series(1, 100) g")->{err}, '',
	'push over the three masters');
my ($pa, $pc) = ($masters[0], $masters[2]);
is($s->query("SELECT connected FROM redis_sync.cluster_nodes() WHERE node = '127.0.0.1:$pc'")->{out},
	't', 'the session is connected to master C');

# C's slots (and keys) to A, then C leaves the cluster (del-node shuts it down)
my $cid = ncli($pc, 'CLUSTER', 'MYID');
my $aid = ncli($pa, 'CLUSTER', 'MYID');
ncli($pa, '--cluster', 'reshard', "127.0.0.1:$pa", '--cluster-from', $cid,
	'--cluster-to', $aid, '--cluster-slots', '16384', '--cluster-yes');
unlike(ncli($pa, 'CLUSTER', 'SLOTS'), qr/^$pc$/m, 'C owns no slot any more');
like(ncli($pa, '--cluster', 'del-node', "127.0.0.1:$pa", $cid), qr/SHUTDOWN|Sending CLUSTER FORGET/i,
	'master C removed');

# the session's next pushes meet MOVED for C's old slots and reload the map
is($s->query("UPDATE t SET v = 'b' || id")->{err}, '', 'push after the removal');
is($s->query("SELECT count(*) FROM redis_sync.verify('t')")->{out}, '0', 'verify() clean');
is($s->query("SELECT connected FROM redis_sync.cluster_nodes() WHERE node = '127.0.0.1:$pc'")->{out},
	'f', 'the connection to the removed master is closed');
is($s->query("SELECT count(*) FROM redis_sync.cluster_nodes() WHERE role = 'master' AND slots > 0")->{out},
	'2', 'two masters own the slots');
$s->quit;

done_testing();

# Redis Cluster: a master that owns no slot (added, never resharded to)
# is removed as redis-cli --cluster del-node does it (CLUSTER FORGET on the
# others, CLUSTER RESET SOFT on it: it keeps running, a cluster of its own
# with no slot).  The map takes slotless masters from CLUSTER NODES, so a
# session that scanned every master holds a live connection to it, as a
# master.  If the session's connections to the other masters are gone
# (an idle timeout, a network blip), the next map reload must not take the
# removed node's empty CLUSTER SLOTS for the map: that map had one master,
# the removed node, and no slot owner, and a TRUNCATE's scan of "every
# master" visited only it (the rows were left cached), every keyed command
# waited for slot owners that never came (redis_cluster.c refresh_map).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my @masters = $c->master_ports;
my ($np, $nid) = $c->add_master;
ok($np, 'a fourth master, with no slot');

my $node = RedisSync::Test::new_node('clremoved', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '3s'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:', warm => false);
CREATE TABLE u (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('u', key_prefix => 'u:', warm => false);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 30) g;
});

# one session: its scan (a TRUNCATE of the empty table u) connects to every
# master, the slotless one too
my $s = RedisSync::Test::session($node);
my $r = $s->query(q{TRUNCATE u; SELECT count(*) FROM redis_sync.cluster_nodes() WHERE role = 'master' AND connected});
is($r->{out}, '4', 'the session is connected to the four masters');

# del-node: the others forget the node, which resets itself
for my $p (@masters)
{
	is($c->node_cli($p, 'CLUSTER', 'FORGET', $nid), 'OK', "$p forgets the slotless master");
}
is($c->node_cli($np, 'CLUSTER', 'RESET', 'SOFT'), 'OK', 'the removed node resets itself');

# the session's connections to the three masters drop
$c->node_cli($_, 'CLIENT', 'KILL', 'TYPE', 'normal') for @masters;

$r = $s->query('TRUNCATE t');
is($r->{err}, '', 'the TRUNCATE succeeds');
my $left = 0;
$left += $c->node_cli($_, 'EVAL', "return #redis.call('KEYS', 't:[0-9]*')", '0') for @masters;
is($left, 0, 'the TRUNCATE removed every row: its scan visited the three masters');
$r = $s->query(q{SELECT string_agg(node, ',' ORDER BY node) FROM redis_sync.cluster_nodes() WHERE role = 'master'});
is($r->{out}, join(',', sort map { "127.0.0.1:$_" } @masters), 'the map has the three masters');
$r = $s->query(q{INSERT INTO t VALUES (100, 'hundred')});
is($r->{err}, '', 'a write goes through');
is($c->cli($masters[0], 'HGET', 't:100', 'v'), 'hundred', 'and is cached');
$s->quit;

done_testing();

# Redis Cluster scaled out: a master just added (add-node) owns no slot
# until a reshard finishes moving its first slot to it, yet it already
# holds the keys moved so far.  CLUSTER SLOTS lists slot owners only, so a
# scan of "every master of the map" left it out: a TRUNCATE meanwhile left
# the moved rows cached, and once the slot was the new master's, Redis held
# rows the table no longer has.  The map now also takes the masters CLUSTER
# NODES lists without slots (redis_cluster.c load_map_from,
# cluster.c rs_cluster_add_slotless_masters).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;
use Time::HiRes qw(time sleep);

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my @masters = $c->master_ports;
my $seed = $masters[0];

# a fourth node joins as a master with no slot
my ($np, $nid) = $c->add_master;
ok($np, 'every node knows the new master');

my $node = RedisSync::Test::new_node('clslotless', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '60s'\n");
sub sq   { return $node->safe_psql('postgres', $_[0]); }
sub ncli { return $c->node_cli(@_); }

sq(q{
CREATE TABLE s (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('s', key_prefix => 's:', warm => false, consistency => 'strict');
INSERT INTO s SELECT g, 'v' || g FROM generate_series(1, 50) g;
});
like(sq(q{SELECT string_agg(role || ' ' || slots, ',' ORDER BY node) FROM redis_sync.cluster_nodes()}),
	qr/master 0/, 'the map lists the new master, with no slot');

# row 5's slot starts to move from its master A to the new master, and its
# keys (the row, its version) are on the new master already
my $slot = ncli($seed, 'CLUSTER', 'KEYSLOT', 's:5');
my ($pa) = grep { ncli($_, 'EXISTS', 's:5') eq '1' } @masters;
ok(defined $pa, 'row 5 is cached on one master');
is(ncli($np, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $c->node_id($pa)), 'OK', 'new master importing');
is(ncli($pa, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $nid), 'OK', 'A migrating');
my @keys = split /\n/, ncli($pa, 'CLUSTER', 'GETKEYSINSLOT', $slot, '100');
is(ncli($pa, 'MIGRATE', '127.0.0.1', $np, '', 0, 5000, 'KEYS', @keys), 'OK',
	'the slot\'s keys moved to the new master');
is(ncli($np, 'DBSIZE'), scalar(@keys), 'the new master holds them');

# the TRUNCATE: its scan must visit the new master; its deletes in the
# slot then meet the half-done migration (TRYAGAIN) and are retried until
# it is finished
my ($h, $out, $err) = $c->start_sql_until_error($node, 'TRUNCATE s', 'TRYAGAIN');

# the reshard finishes: the slot is the new master's
is(ncli($np, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $nid), 'OK', 'slot assigned to the new master on it');
is(ncli($pa, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $nid), 'OK', 'slot assigned to the new master on A');
$h->finish;
is($h->result(0), 0, 'the strict TRUNCATE commits') or diag("psql: $$out $$err");
is(ncli($np, 'EXISTS', 's:5'), '0', 'row 5, moved to the new master, is deleted');
my $left = 0;
$left += ncli($_, 'EVAL', "return #redis.call('KEYS', 's:[0-9]*')", '0') for @masters, $np;
is($left, 0, 'no row of the table is left on any master');

done_testing();

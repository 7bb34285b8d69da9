# placeholder, replaced below
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 1);
my @m = $c->master_ports;
is(scalar(@m), 3, 'three masters');
my @r = $c->replica_ports;
is(scalar(@r), 3, 'three replicas');
done_testing();

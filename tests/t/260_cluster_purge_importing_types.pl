# Redis Cluster: a TRUNCATE's purge while a slot is being imported.
#
# A purge scans the keyspace once and keeps only hashes and strings (the
# table's rows), leaving other types under the prefix alone (a write-behind
# dirty set).  The type of each key is read by a script on the node the
# SCAN runs on; a node importing a slot holds keys of that slot it may not
# read from a script (not redirected), so their type is asked through the
# client, which follows the redirection.  Kept blind, the set below would be
# deleted by the purge; skipped, the row key would stay cached.
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
is(scalar(@masters), 3, 'three masters');

my $node = RedisSync::Test::new_node('clpurgetype', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '60s'\n");

sub sq   { return $node->safe_psql('postgres', $_[0]); }
sub ncli { return $c->node_cli(@_); }

sq(q{
CREATE TABLE s (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('s', key_prefix => 's:', warm => false, consistency => 'strict');
INSERT INTO s SELECT g, 'v' || g FROM generate_series(1, 50) g;
});

# the set, the row s:5 and its version share s:5's slot (hash tags)
my $set  = 's:x{s:5}';
my $vkey = sq(q{SELECT redis_sync.version_key('s:5')});
my $slot = ncli($masters[0], 'CLUSTER', 'KEYSLOT', 's:5');
is(ncli($masters[0], 'CLUSTER', 'KEYSLOT', $set), $slot, 'the set is in the slot of row 5');
my ($pa) = grep { ncli($_, 'EXISTS', 's:5') eq '1' } @masters;
ok(defined $pa, 'row 5 is cached on one master');
ncli($pa, 'SADD', $set, 'pending');
my ($pb) = grep { $_ != $pa } @masters;

# slot migrating from A to B
is(ncli($pb, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $c->node_id($pa)), 'OK', 'B importing');
is(ncli($pa, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $c->node_id($pb)), 'OK', 'A migrating');
# every key of the slot (row 5, its version, the set, the in-flight marker
# hash of the slot) moves; the slot stays importing on B until the end
my @keys = split /\n/, ncli($pa, 'CLUSTER', 'GETKEYSINSLOT', $slot, '100');
ok((grep { $_ eq $set } @keys) && (grep { $_ eq $vkey } @keys), 'the slot holds the set and the version');
is(ncli($pa, 'MIGRATE', '127.0.0.1', $pb, '', 0, 5000, 'KEYS', @keys), 'OK',
	'the slot\'s keys moved to B');

# the TRUNCATE scans while B imports the slot, then its deletes in the
# slot meet the half-done migration (TRYAGAIN: the slot's eviction-watch
# hash exists on neither node) and are retried until it is finished
my ($h, $out, $err, $met) = $c->start_sql_until_error($node, 'TRUNCATE s', 'TRYAGAIN');
ok($met, 'the purge met the migration (TRYAGAIN)') or diag("psql: $$out $$err");

# finish the migration
is(ncli($pb, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $c->node_id($pb)), 'OK', 'slot assigned to B on B');
is(ncli($pa, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $c->node_id($pb)), 'OK', 'slot assigned to B on A');
$h->finish;
is($h->result(0), 0, 'the strict TRUNCATE commits') or diag("psql: $$out $$err");
is(ncli($pb, 'SISMEMBER', $set, 'pending'), '1', 'the set under the prefix is kept');
is(ncli($pb, 'EXISTS', 's:5'), '0', 'row 5 is deleted');
my $left = 0;
$left += ncli($_, 'EVAL', "return #redis.call('KEYS', 's:[0-9]*')", '0') for @masters;
is($left, 0, 'no row of the table is left');

done_testing();

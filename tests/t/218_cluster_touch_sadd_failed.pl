# Redis Cluster: hincrby()/hset() change the key, then SADD the member to the
# dirty set in a second round trip (the dirty set is in another slot, on
# another master).  When that second step fails (the dirty set's master
# paused or down past command_timeout, the connection killed, a cancel) the
# change is already in Redis and cannot be taken back (other sessions may
# have changed the key since): the ERROR says so and gives the SADD that
# marks the key (a retry of the call would apply the change twice).  After
# that SADD the change is drained.
#
# Found by the wave 2k cluster chaos review: the ERROR used to be the SADD's
# timeout alone, so callers retried (counting twice) or gave up (the change
# never reached the table until the key was touched again).  Documented in
# README Limitations (Redis Cluster).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;
use Time::HiRes qw(time sleep);

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('cltouch', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '1s'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE wbx (id int PRIMARY KEY, views bigint NOT NULL DEFAULT 0);
INSERT INTO wbx SELECT g, 0 FROM generate_series(1, 50) g;
SELECT redis_sync.write_behind('wbx', key_prefix => 'wbx:', counters => '{views}');
});

# the master of the dirty set's slot, and a row whose key lives on another master
my $slot_of = sub { return $c->node_cli($c->any_port, 'CLUSTER', 'KEYSLOT', $_[0]); };
my %owner;
for my $line (split /\n/, $c->node_cli($c->any_port, 'CLUSTER', 'NODES'))
{
	my @f = split / /, $line;
	next unless $f[2] =~ /master/;
	my ($port) = $f[1] =~ /:(\d+)/;
	for my $r (@f[ 8 .. $#f ])
	{
		next if $r =~ /^\[/;
		my ($a, $b) = split /-/, $r;
		$owner{$_} = $port for $a .. ($b // $a);
	}
}
my $dirty_master = $owner{ $slot_of->('wbx:dirty') };
my ($id) = grep { $owner{ $slot_of->("wbx:$_") } != $dirty_master } 1 .. 50;
ok(defined $id, "row ${id}'s key is on another master than the dirty set ($dirty_master)");

is(sq("SELECT redis_sync.hincrby('wbx', '$id', 'views', 1)"), '1', 'hincrby() seeds and increments');
sq("SELECT redis_sync.flush('wbx')");
is(sq("SELECT views FROM wbx WHERE id = $id"), '1', 'drained: 1');

# the dirty set's master stops answering for 3 s (longer than command_timeout)
$c->node_cli($dirty_master, 'CLIENT', 'PAUSE', '3000', 'ALL');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT redis_sync.hincrby('wbx', '$id', 'views', 5)");
isnt($ret, 0, 'hincrby() fails while the dirty set\'s master is paused');
like($err, qr/hincrby\(\) was applied to Redis key "wbx:$id", but the key could not be marked dirty/,
	'the ERROR says the change was applied');
like($err, qr/run SADD wbx:dirty $id \(do not repeat the change\)/, '... and how to mark the key');
# PING waits out the pause
is($c->node_cli($dirty_master, 'PING'), 'PONG', 'the pause is over');
is($c->cli($c->any_port, 'HGET', "wbx:$id", 'views'), '6', 'Redis holds the change');

$c->cli($c->any_port, 'SADD', 'wbx:dirty', $id);
sq("SELECT redis_sync.flush('wbx')");
is(sq("SELECT views FROM wbx WHERE id = $id"), '6', 'after the SADD of the hint the change is drained');
is(sq("SELECT count(*) FROM redis_sync.verify('wbx')"), '0', 'verify() clean');

done_testing();

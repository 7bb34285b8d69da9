# Redis Cluster with cluster-require-full-coverage no, one master down
# (no replica to take over): the other masters still serve their slots,
# and the worker's marker sweep must still sweep their marker hashes.  The
# full sweep asked about every slot's marker hash in one pipeline, which
# fails as a whole when one node cannot be reached, and the sweep of each
# master's lowest slot stopped at the first master that failed: the
# masters after it were never swept while it was down (marker_sweep.c).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::Compare;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
is($c->node_cli($_, 'CONFIG', 'SET', 'cluster-require-full-coverage', 'no'), 'OK', "coverage of $_")
  for $c->ports;

# the masters by their lowest slot (redis-cli --cluster create: 0, 5461, 10923)
my %owner;
for my $line (split /\n/, $c->node_cli($c->any_port, 'CLUSTER', 'NODES'))
{
	my @f = split / /, $line;
	next unless $f[2] =~ /master/;
	my ($port) = $f[1] =~ /:(\d+)@/;
	for my $r (@f[ 8 .. $#f ])
	{
		my ($a, $b) = split /-/, $r;
		$owner{$_} = $port for $a .. ($b // $a);
	}
}
my $m0 = $owner{0};
my $zero = RedisSync::Cluster::slot_of('0');    # the marker hash "<base>:{0}": no master's lowest slot
my $live = $owner{$zero};
my ($dead) = grep { $_ != $m0 && $_ != $live } $c->master_ports;
ok($dead && $live != $m0, "master $dead to stop; $m0 (first) and $live stay");
my ($lowest) = sort { $a <=> $b } grep { $owner{$_} == $live } keys %owner;
ok($lowest > 0 && $lowest != $zero, "the lowest slot of $live is $lowest");

my $node = RedisSync::Test::new_node('clsweepdown', redis_url => $c->url,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\nredis_sync.command_timeout = '1s'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }
sub lcli { return $c->cli($live, @_); }

sq(q{
CREATE TABLE ti (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('ti', key_prefix => 'ti:');
INSERT INTO ti SELECT g, 'v' || g FROM generate_series(1, 40) g;
});
my $ti = sq(q{SELECT 'ti'::regclass::oid});
my $base = sq("SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()");
my @ids = grep { $owner{ RedisSync::Cluster::slot_of("ti:$_") } != $dead } 1 .. 40;
ok(@ids >= 2, 'rows on the masters that stay up');

$c->kill_node($dead);
note("master $dead stopped");

# a live marker in the lowest slot of $live (swept every round), and one in
# the slot of "{0}" (the full sweep only); both of transactions that did
# not commit: their rows are repaired
my $mlow = "$base:{" . RedisSync::Cluster::tag_of($lowest) . "}";
my $mzero = "$base:{0}";
# (HSET's reply says each marker was written: reading them back races the
# 200 ms sweep, which may already have repaired the first)
lcli('HSET', "ti:$ids[0]", 'v', 'stale');
my $w = lcli('HSET', $mlow, '6:1:0:0', qq{[[$ti,"$ids[0]"]]});
lcli('HSET', "ti:$ids[1]", 'v', 'stale');
$w .= lcli('HSET', $mzero, '7:1:0:0', qq{[[$ti,"$ids[1]"]]});
is($w, '11', 'both markers written');

ok(defined RedisSync::Compare::wait_for(sub { lcli('HEXISTS', $mlow, '6:1:0:0') eq '0' }, 30),
	'the lowest slot of a master after the stopped one is swept');
is(lcli('HGET', "ti:$ids[0]", 'v'), "v$ids[0]", 'its row was repaired');
ok(defined RedisSync::Compare::wait_for(sub { lcli('HEXISTS', $mzero, '7:1:0:0') eq '0' }, 30),
	'the full sweep finds the marker hash on a master that is up');
is(lcli('HGET', "ti:$ids[1]", 'v'), "v$ids[1]", 'its row was repaired');

done_testing();

# Redis Cluster: a slot migrating in the middle of a per-node apply call
# (Redis 7, script flagged allow-cross-slot-keys).
#
# A reshard moves a slot's keys a few at a time (MIGRATE), so a data key can
# have left its node while its version key has not.  The per-node call then
# reads the version locally but cannot write the key ("non local key"):
# that is not a refusal of the key (which fails a strict commit with
# "Redis rejected the push"), it is a redirection: the call must be run
# again per slot, following the migration.  Here the migration is held
# half-done until the per-slot retry has met it (TRYAGAIN), then finished:
# the strict commit succeeds and both keys hold the new values.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;
use IPC::Run ();
use Time::HiRes qw(time sleep);

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my @masters = $c->master_ports;
is(scalar(@masters), 3, 'three masters');

my $node = RedisSync::Test::new_node('clask', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '60s'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }

# one node, no redirection following
sub ncli { return $c->node_cli(@_); }

sub node_id { return $c->node_id($_[0]); }

# the master holding key k (the others answer MOVED)
sub owner_of_key
{
	my ($k) = @_;
	for my $p (@masters)
	{
		return $p if ncli($p, 'EXISTS', $k) eq '1';
	}
	die "no master holds $k";
}

sq(q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:', consistency => 'strict', warm => false);
INSERT INTO t SELECT g, 'old' || g FROM generate_series(1, 200) g;
});

# two rows whose keys are on one master A, in different slots
my (%slot, %owner);
for my $id (1 .. 40)
{
	$slot{$id} = ncli($masters[0], 'CLUSTER', 'KEYSLOT', "t:$id");
}
$owner{$_} = owner_of_key("t:$_") for keys %slot;
my ($moving, $other);
OUTER: for my $i (1 .. 40)
{
	for my $j (1 .. 40)
	{
		next if $i == $j || $owner{$i} != $owner{$j} || $slot{$i} == $slot{$j};
		($moving, $other) = ($i, $j);
		last OUTER;
	}
}
ok(defined $moving, "rows $moving and $other: one master, two slots");
my $pa = $owner{$moving};
my ($pb) = grep { $_ != $pa } @masters;
my $s = $slot{$moving};
my $vkey = sq("SELECT redis_sync.version_key('t:$moving')");
is(ncli($pa, 'EXISTS', "t:$moving", $vkey), '2', 'key and version on master A');

# slot s migrating A -> B; only the data key has gone yet
is(ncli($pb, 'CLUSTER', 'SETSLOT', $s, 'IMPORTING', node_id($pa)), 'OK', 'B importing');
is(ncli($pa, 'CLUSTER', 'SETSLOT', $s, 'MIGRATING', node_id($pb)), 'OK', 'A migrating');
is(ncli($pa, 'MIGRATE', '127.0.0.1', $pb, '', 0, 5000, 'KEYS', "t:$moving"), 'OK',
	'data key migrated, version key not');

# a strict commit touching both keys, in the background
my $trystat = sub {
	my ($n) = ncli($pa, 'INFO', 'errorstats') =~ /errorstat_TRYAGAIN:count=(\d+)/;
	return $n // 0;
};
my $try0 = $trystat->();
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[
		$node->installed_command('psql'), '-X', '-At', '-v', 'ON_ERROR_STOP=1',
		'-h', $node->host, '-p', $node->port, '-d', 'postgres',
		'-c', "UPDATE t SET v = 'new' WHERE id IN ($moving, $other)"
	],
	'<', \undef, '>', \$out, '2>', \$err);

# wait until the retry met the half-done migration (TRYAGAIN on A), or the
# statement ended (it must not have, see below)
my $deadline = time + 60;
while (time < $deadline)
{
	last if $trystat->() > $try0;
	last unless $h->pumpable;
	$h->pump_nb;
	sleep 0.05;
}
ok($trystat->() > $try0, 'the per-slot retry met the migration (TRYAGAIN)')
  or diag("psql: $out $err");

# finish the migration
is(ncli($pa, 'MIGRATE', '127.0.0.1', $pb, '', 0, 5000, 'KEYS', $vkey), 'OK', 'version key migrated');
is(ncli($pb, 'CLUSTER', 'SETSLOT', $s, 'NODE', node_id($pb)), 'OK', 'slot assigned to B on B');
is(ncli($pa, 'CLUSTER', 'SETSLOT', $s, 'NODE', node_id($pb)), 'OK', 'slot assigned to B on A');

$h->finish;
is($h->result(0), 0, 'the strict commit succeeded') or diag("psql: $out $err");
unlike($err, qr/rejected the push|non local key/, 'no key reported as refused');
is(ncli($pb, 'HGET', "t:$moving", 'v'), 'new', 'the migrated key has the new value');
is(ncli($pa, 'HGET', "t:$other", 'v'), 'new', 'the other key of the call too');
is(sq("SELECT count(*) FROM redis_sync.verify('t')"), '0', 'verify() clean');

done_testing();

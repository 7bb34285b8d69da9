# Redis Cluster: a MOVED ping-pong (two masters that disagree on who owns a
# slot, as they can for a moment while a failover or a reshard's last step
# propagates) is retried with backoff within redis_sync.command_timeout,
# not given up after 64 immediate rounds (a few milliseconds): a strict
# commit on that slot waits, and succeeds once the nodes agree.
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

my $node = RedisSync::Test::new_node('clmoved', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '60s'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }

# one node, no redirection following
sub ncli { return $c->node_cli(@_); }

sub node_id { return $c->node_id($_[0]); }

sub moved_count { return $c->error_count('MOVED'); }

sq(q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:', consistency => 'strict', warm => false);
});

# the master owning t:1's slot (the others answer MOVED); the slot holds no
# key yet (a slot with keys cannot be given away)
my ($pa) = grep { ncli($_, 'GET', 't:1') !~ /MOVED/ } @masters;
ok(defined $pa, 'slot of t:1 on master A');
my ($pb) = grep { $_ != $pa } @masters;
my $s = ncli($pa, 'CLUSTER', 'KEYSLOT', 't:1');
is(ncli($pa, 'CLUSTER', 'COUNTKEYSINSLOT', $s), '0', 'the slot is empty');

# A now says B owns the slot; B still says A does: MOVED both ways
is(ncli($pa, 'CLUSTER', 'SETSLOT', $s, 'NODE', node_id($pb)), 'OK', 'A gives the slot to B (A only)');
like(ncli($pa, 'GET', 't:1'), qr/MOVED/, 'A redirects');
like(ncli($pb, 'GET', 't:1'), qr/MOVED/, 'B redirects');

my $moved0 = moved_count();
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[
		$node->installed_command('psql'), '-X', '-At', '-v', 'ON_ERROR_STOP=1',
		'-h', $node->host, '-p', $node->port, '-d', 'postgres',
		'-c', "INSERT INTO t VALUES (1, 'new')"
	],
	'<', \undef, '>', \$out, '2>', \$err);

# many redirections while the nodes disagree, and the statement
# still waiting
my $deadline = time + 60;
while (time < $deadline)
{
	$h->pump_nb if $h->pumpable;
	last if moved_count() - $moved0 > 20 || !$h->pumpable;
	sleep 0.1;
}
cmp_ok(moved_count() - $moved0, '>', 20, 'MOVED replies both ways');
ok($h->pumpable, 'the strict commit is still retrying') or diag("psql: $out $err");

# the nodes agree again: A owns the slot
is(ncli($pa, 'CLUSTER', 'SETSLOT', $s, 'NODE', node_id($pa)), 'OK', 'A takes the slot back');
$h->finish;
is($h->result(0), 0, 'the strict commit succeeded') or diag("psql: $out $err");
unlike($err, qr/redirections|could not run/, 'not given up');
is(ncli($pa, 'HGET', 't:1', 'v'), 'new', 'the key has the new value');

done_testing();

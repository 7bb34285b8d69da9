# Redis Cluster: a master is killed (SIGKILL) under a write load; the
# cluster promotes its replica (cluster-node-timeout 2 s).
#   - strict commits whose keys are on the dead master's slots fail while
#     the slots are down (and the row is unchanged);
#   - eventual commits (pgbench, write-through) never fail: what could not
#     be pushed is queued in the outbox;
#   - once the replica has taken over, everything converges: flush(), and
#     verify() is clean for both tables; strict commits work again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::ClusterLoad qw();
use Test::More;
use IPC::Run ();
use Time::HiRes qw(time sleep);

my $ROWS    = 1000;
my $CLIENTS = 3;

my ($c, $node) = RedisSync::ClusterLoad::cluster_and_node('clkill', node_timeout => 2000,
	extra_conf => "redis_sync.command_timeout = '1s'\nredis_sync.connect_timeout = '500ms'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }
sub poll_until { return RedisSync::ClusterLoad::poll_until(@_); }

sq(qq{
CREATE TABLE ev (id int PRIMARY KEY, v bigint NOT NULL);
SELECT redis_sync.write_through('ev', key_prefix => 'ev:', warm => false);
INSERT INTO ev SELECT g, 0 FROM generate_series(1, $ROWS) g;
CREATE TABLE st (id int PRIMARY KEY, v bigint NOT NULL);
SELECT redis_sync.write_through('st', key_prefix => 'st:', consistency => 'strict', warm => false);
INSERT INTO st SELECT g, 0 FROM generate_series(1, 50) g;
});

# the master holding st:1
my ($victim) = grep { $c->node($_)->cli('EXISTS', 'st:1') eq '1' } $c->master_ports;
ok(defined $victim, 'found the master of st:1');
my $replica = $c->replica_of($victim);
ok(defined $replica, "master $victim has replica $replica");

my $script = RedisSync::ClusterLoad::pgbench_script('clkill',
	"\\set id random(1, $ROWS)\nUPDATE ev SET v = v + 1 WHERE id = :id;\n");
my $pgb = RedisSync::ClusterLoad::start_pgbench($node, $script, $CLIENTS, 14);
RedisSync::ClusterLoad::wait_connected($node, 'UPDATE ev SET v%', $CLIENTS);

my $s = RedisSync::Test::session($node);
is($s->query("UPDATE st SET v = 1 WHERE id = 1")->{err}, '', 'strict commit works before the kill');

$c->kill_node($victim);
note("killed master $victim");

# strict commits on the dead master's slots fail until the replica takes over
my ($failed, $ok_after) = (0, 0);
my $deadline = time + 60;
my $i = 1;
while (time < $deadline)
{
	my $r = $s->query("UPDATE st SET v = v + 1 WHERE id = 1");
	if ($r->{err} =~ /ERROR/) { $failed++; }
	else { $ok_after = 1; last; }
}
cmp_ok($failed, '>', 0, "strict commits failed while the slots were down ($failed)");
ok($ok_after, 'a strict commit succeeded once the replica took over');
# (the node asked may learn of the promotion by gossip a little later)
ok(poll_until("replica $replica promoted", sub { ($c->roles->{$replica} // '') eq 'master' }),
	"replica $replica was promoted");
$s->quit;

RedisSync::ClusterLoad::finish_pgbench($pgb, 'load', no_failures => 'eventual commits never failed');
cmp_ok(sq("SELECT sum(queued) FROM redis_sync.stats WHERE \"table\" = 'ev'::regclass"), '>', 0,
	'eventual commits were queued while the slots were down');

# converge
poll_until('outbox delivered', sub {
	sq("SELECT redis_sync.flush()");
	sq("SELECT count(*) FROM redis_sync.outbox") eq '0';
});
is(sq("SELECT count(*) FROM redis_sync.verify('ev')"), '0', 'ev: every row equals its key');
is(sq("SELECT count(*) FROM redis_sync.verify('st')"), '0', 'st: every row equals its key');
is($c->any_cli('HGET', 'st:1', 'v'), sq("SELECT v FROM st WHERE id = 1"), 'st:1 holds the committed value');

$node->stop;
done_testing();

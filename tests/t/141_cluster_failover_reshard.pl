# Redis Cluster under a write load (pgbench, 4 clients, write-through):
#   1. a manual failover (CLUSTER FAILOVER on a replica) during the load;
#   2. a live reshard of 1,200 slots (redis-cli --cluster reshard) during
#      the load: ASK redirections while slots migrate, MOVED afterwards.
# No pgbench transaction fails (eventual consistency: a push that fails goes
# to the outbox); after the load and flush(), verify() finds every row
# equal to its key and no stray key.  A session whose slot map went stale
# with the reshard is redirected (MOVED) and still pushes.
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

my $ROWS    = 2000;
my $CLIENTS = 4;

my ($c, $node) = RedisSync::ClusterLoad::cluster_and_node('clfail',
	extra_conf => "redis_sync.command_timeout = '5s'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }
sub poll_until { return RedisSync::ClusterLoad::poll_until(@_); }

sq(qq{
CREATE TABLE acc (id int PRIMARY KEY, v bigint NOT NULL, note text);
SELECT redis_sync.write_through('acc', key_prefix => 'acc:', warm => false);
INSERT INTO acc SELECT g, 0, 'init' FROM generate_series(1, $ROWS) g;
});
is(sq("SELECT count(*) FROM redis_sync.verify('acc')"), '0', 'cache == table before the load');

my $script = RedisSync::ClusterLoad::pgbench_script('clfail', <<"EOS");
\\set id random(1, $ROWS)
\\set r random(1, 1000000)
UPDATE acc SET v = v + 1, note = 'c' || :client_id || ':' || :r WHERE id = :id;
EOS

sub start_pgbench { return RedisSync::ClusterLoad::start_pgbench($node, $script, $CLIENTS, $_[0]); }
sub finish_pgbench { return RedisSync::ClusterLoad::finish_pgbench(@_); }

# a session that loads the slot map before the reshard
my $s = RedisSync::Test::session($node);
$s->query("UPDATE acc SET note = 'before' WHERE id <= 300");

# ---- 1. manual failover under load ----
my $old_master = ($c->master_ports)[0];
my $replica    = $c->replica_of($old_master);
ok(defined $replica, "master $old_master has a replica");
my $job = start_pgbench(8);
RedisSync::ClusterLoad::wait_connected($node, 'UPDATE acc SET v = v + 1%', $CLIENTS);
is($c->cli($replica, 'CLUSTER', 'FAILOVER'), 'OK', 'CLUSTER FAILOVER accepted by the replica');
poll_until('replica promoted', sub { ($c->roles->{$replica} // '') eq 'master' });
pass("replica $replica is now a master");
finish_pgbench($job, 'failover');
$c->wait_ok;

# ---- 2. live reshard of 1,200 slots under load ----
my @m = $c->master_ports;
my $from = $m[0];
my $to   = $m[1];
my $from_id = $c->cli($from, 'CLUSTER', 'MYID');
my $to_id   = $c->cli($to,   'CLUSTER', 'MYID');
my ($rs_out, $rs_err) = ('', '');
$job = start_pgbench(15);
RedisSync::ClusterLoad::wait_connected($node, 'UPDATE acc SET v = v + 1%', $CLIENTS);
my $rs = IPC::Run::start(
	[
		RedisSync::Test::redis_cli_bin(), '--cluster', 'reshard', "127.0.0.1:$from",
		'--cluster-from', $from_id, '--cluster-to', $to_id,
		'--cluster-slots', 1200, '--cluster-yes'
	],
	'<', \undef, '>', \$rs_out, '2>', \$rs_err, IPC::Run::timeout(300));
ok($rs->finish, 'reshard of 1200 slots finished') or diag("$rs_out\n$rs_err");
finish_pgbench($job, 'reshard');
$c->wait_ok;
like($c->cli($to, 'CLUSTER', 'COUNTKEYSINSLOT', 0) // '', qr/^\d+$/, 'target master answers');

# the session's map is stale: MOVED, then its push lands
$s->query("UPDATE acc SET note = 'after-reshard' WHERE id <= 300");
is($s->query("SELECT count(*) FROM redis_sync.outbox")->{out}, '0', 'nothing queued by the stale-map session');
cmp_ok($s->query("SELECT sum(redirections) FROM redis_sync.cluster_nodes()")->{out}, '>', 0,
	'the stale-map session was redirected');
is($c->any_cli('HGET', 'acc:150', 'note'), 'after-reshard', 'its push landed');
$s->quit;

# ---- converged ----
sq("SELECT redis_sync.flush()");
poll_until('outbox empty', sub { sq("SELECT count(*) FROM redis_sync.outbox") eq '0' });
is(sq("SELECT count(*) FROM redis_sync.verify('acc')"), '0',
	'after the load and flush(): every row equals its key, no stray key');
is(sq("SELECT sum(v) FROM acc") > 0 ? 'ok' : 'none', 'ok', 'the load changed rows');

$node->stop;
done_testing();

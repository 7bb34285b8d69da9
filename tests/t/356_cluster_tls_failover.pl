# A TLS-only Redis Cluster (tls-cluster yes, --port 0): README "Redis
# Cluster" and "TLS (rediss://)" say a rediss:// URL works against a
# cluster, each node verified against the address CLUSTER SLOTS announces.
# Under a pgbench write load (write-through, eventual) and hincrby() writers
# (write-behind counters), a replica takes over with CLUSTER FAILOVER
# (lossless).  After the load and flush(): verify() is clean, every counter
# increment reached the table exactly once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::ClusterLoad qw();
use RedisSync::TLS;
use RedisSync::Compare;
use Test::More;
use IPC::Run ();
use Time::HiRes qw(time sleep);

my $ROWS    = 500;
my $CLIENTS = 3;

my $pki = RedisSync::TLS::make_pki();
my @tlsargs = ('--tls', '--cacert', $pki->{ca}, '--cert', $pki->{client}, '--key', $pki->{client_key});

# a TLS cluster: 3 masters, 1 replica each, TLS only (also the bus and replication)
my $c = bless { nodes => {}, ports => [], tlsargs => \@tlsargs }, 'TLSCluster';
for (1 .. 6)
{
	my $port = RedisSync::Cluster::cluster_port();
	my $r = RedisSync::Test::redis_object(
		class        => 'RedisSync::TLS::Redis',
		dir_template => 'rtlscl_XXXX',
		port         => $port,
		pki          => $pki,
		auth_clients => 'yes',
		server_cert  => 'server',
		extra        => [
			'--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
			'--cluster-node-timeout', 2000, '--tls-cluster', 'yes', '--tls-replication', 'yes',
			'--cluster-replica-validity-factor', 0,
			'--tls-client-cert-file', $pki->{client}, '--tls-client-key-file', $pki->{client_key},
		]);
	$r->start;
	$c->{nodes}{$port} = $r;
	push @{ $c->{ports} }, $port;
}
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ RedisSync::Test::redis_cli_bin(), @tlsargs, '--cluster', 'create',
			(map { "127.0.0.1:$_" } @{ $c->{ports} }), '--cluster-replicas', 1, '--cluster-yes' ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120))
	  or die "cluster create failed: $out $err";
}
$c->wait_ok;
RedisSync::ClusterLoad::poll_until('replicas attached', sub {
	my @r = $c->replica_ports;
	@r >= 3 && !grep { $c->cli($_, 'INFO', 'replication') !~ /master_link_status:up/ } @r;
});

my $url = 'rediss://' . join(',', map { "127.0.0.1:$_" } @{ $c->{ports} }) . '/0';
my $node = RedisSync::Test::new_node('cltls', redis_url => $url,
	extra_conf => "max_connections = 40\nredis_sync.command_timeout = '5s'\n"
	  . RedisSync::TLS::tls_conf($pki, verify => 'full', client => 1));
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(qq{
CREATE TABLE acc (id int PRIMARY KEY, v bigint NOT NULL, note text);
SELECT redis_sync.write_through('acc', key_prefix => 'acc:', warm => false);
INSERT INTO acc SELECT g, 0, 'init' FROM generate_series(1, $ROWS) g;
CREATE TABLE cnt (id int PRIMARY KEY, views bigint NOT NULL DEFAULT 0);
INSERT INTO cnt SELECT g, 0 FROM generate_series(1, 100) g;
SELECT redis_sync.write_behind('cnt', key_prefix => 'cnt:', counters => '{views}', flush_interval => '100 ms');
CREATE TABLE done (n int NOT NULL);
});
is(sq("SELECT count(*) FROM redis_sync.cluster_nodes() WHERE role = 'master'"), '3',
	'the TLS cluster is seen with its 3 masters');
is(sq("SELECT count(*) FROM redis_sync.verify('acc')"), '0', 'cache == table before the load');

my $script = RedisSync::ClusterLoad::pgbench_script('cltls', <<"EOS");
\\set id random(1, $ROWS)
\\set k random(1, 100)
UPDATE acc SET v = v + 1, note = 'c' || :client_id WHERE id = :id;
BEGIN;
SELECT redis_sync.hincrby('cnt', :k::text, 'views', 1);
INSERT INTO done VALUES (1);
COMMIT;
EOS
my $job = RedisSync::ClusterLoad::start_pgbench($node, $script, $CLIENTS, 10);
RedisSync::ClusterLoad::wait_connected($node, '%acc%', $CLIENTS);

# fail over the master of the dirty set
my ($victim) = grep { $c->node_cli($_, 'TYPE', 'cnt:dirty') !~ /MOVED/ } $c->master_ports;
ok(defined $victim, 'found the master of the dirty set');
my $replica = $c->replica_of($victim);
sleep 2;
is($c->cli($replica, 'CLUSTER', 'FAILOVER'), 'OK', "CLUSTER FAILOVER of $victim accepted by $replica");
RedisSync::ClusterLoad::poll_until('replica promoted', sub { ($c->roles->{$replica} // '') eq 'master' });
RedisSync::ClusterLoad::finish_pgbench($job, 'load');
$c->wait_ok;

RedisSync::ClusterLoad::poll_until('flush', sub {
	my $r = $node->psql('postgres', 'SELECT redis_sync.flush()');
	$r == 0 && sq("SELECT count(*) FROM redis_sync.outbox") eq '0';
}, 60);
is(sq("SELECT count(*) FROM redis_sync.verify('acc')"), '0', 'acc: verify() clean after the failover');
is(sq("SELECT count(*) FROM redis_sync.verify('cnt')"), '0', 'cnt: verify() clean after the failover');
is(sq("SELECT sum(views) FROM cnt"), sq("SELECT count(*) FROM done"),
	'every committed hincrby() reached the table exactly once');
my $err = sq("SELECT last_error FROM redis_sync.worker_stats");
note("worker last_error: $err");

$node->stop;
done_testing();

package TLSCluster;
BEGIN { our @ISA = ('RedisSync::Cluster'); }

sub cli
{
	my ($self, $port, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ RedisSync::Test::redis_cli_bin(), @{ $self->{tlsargs} }, '-c', '-h', '127.0.0.1',
			'-p', $port, @args ], '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	chomp $out;
	return $out;
}

sub node_cli
{
	my ($self, $port, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ RedisSync::Test::redis_cli_bin(), @{ $self->{tlsargs} }, '-h', '127.0.0.1', '-p', $port, @args ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	chomp $out;
	return $out;
}

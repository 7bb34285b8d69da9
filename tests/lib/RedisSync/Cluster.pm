# A local Redis Cluster for the redis_sync TAP tests.
#
#   my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 1);
#   $c->url;                 # "redis://127.0.0.1:P1,127.0.0.1:P2,.../0" (seeds)
#   $c->seed_url;            # one node only
#   $c->cli($port, @args);   # redis-cli -c against one node
#   $c->node_cli($port, @args);  # the same, redirections returned as they are
#   $c->node_id($port);      # CLUSTER MYID
#   $c->error_count('MOVED');    # MOVED (ASK, TRYAGAIN) replies of the masters so far
#   $c->master_ports;        # current masters (asks the cluster)
#   $c->wait_ok;             # until every node reports cluster_state:ok
#   $c->kill_node($port);    # SIGKILL
#   my ($port, $id) = $c->add_master;   # a new node joins as a master with no slot
#   my $h = $c->start_sql_until_error($node, 'TRUNCATE t', 'TRYAGAIN');
#   RedisSync::Cluster::slot_of('t:1');  # the hash slot of a key (no hash tag)
#   RedisSync::Cluster::tag_of($slot);   # the tag fence_cluster.c gives a slot
#
# Every node is a RedisSync::Test::Redis started with --cluster-enabled yes
# and its own --cluster-config-file in the test's temp dir, on loopback ports
# below 55536 (the cluster bus is port + 10000).  The nodes are stopped by
# RedisSync::Test's END block, on success and on failure.
package RedisSync::Cluster;

use strict;
use warnings;

use IPC::Run ();
use Time::HiRes qw(time sleep);
use PostgreSQL::Test::Utils;
use Test::More;
use RedisSync::Test;

# the hash slot of a string without a hash tag: CRC16 (XMODEM) mod 16384
sub slot_of
{
	my ($s) = @_;
	my $crc = 0;
	for my $b (unpack 'C*', $s)
	{
		$crc ^= $b << 8;
		for (1 .. 8)
		{
			$crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) : ($crc << 1);
			$crc &= 0xffff;
		}
	}
	return $crc & 16383;
}

# the tag of a slot as fence_cluster.c makes it: the smallest decimal string
# hashing to it (marker hashes are "<base>:{<tag>}")
sub tag_of
{
	my ($slot) = @_;
	my $i = 0;
	$i++ while slot_of("$i") != $slot;
	return "$i";
}

# a free port p with p + 10000 free too, below 55536
sub cluster_port
{
	for (1 .. 1000)
	{
		my $p = RedisSync::Test::free_port();
		next if $p >= 55536;
		return $p if port_free($p + 10000);
	}
	die "no free port pair below 55536 for a cluster node";
}

sub port_free
{
	my ($port) = @_;
	require IO::Socket::INET;
	my $s = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => $port,
		Proto     => 'tcp',
		ReuseAddr => 1);
	return 0 unless $s;
	close $s;
	return 1;
}

sub start_cluster
{
	my (%opts) = @_;
	my $masters  = $opts{masters}  // 3;
	my $replicas = $opts{replicas} // 1;
	my $n        = $masters * (1 + $replicas);
	my $self = bless { nodes => {}, ports => [] }, __PACKAGE__;

	for (1 .. $n)
	{
		my $port = cluster_port();
		my $r    = RedisSync::Test::redis_object(
			class        => 'RedisSync::Cluster::Node',
			dir_template => 'rcluster_XXXX',
			port         => $port,
			extra        => [
				'--cluster-enabled',      'yes',
				'--cluster-config-file',  'nodes.conf',
				'--cluster-node-timeout', $opts{node_timeout} // 2000,
				'--cluster-allow-reads-when-down', 'no',
				# a replica may take over however long its link was down
				'--cluster-replica-validity-factor', 0,
			]);
		$r->start;
		$self->{nodes}{$port} = $r;
		push @{ $self->{ports} }, $port;
	}
	my ($out, $err) = ('', '');
	my @cmd = (RedisSync::Test::redis_cli_bin(), '--cluster', 'create',
		(map { "127.0.0.1:$_" } @{ $self->{ports} }),
		'--cluster-replicas', $replicas, '--cluster-yes');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(120))
	  or die "redis-cli --cluster create failed:\n$out\n$err";
	$self->wait_ok;
	my $deadline = time + 60;
	while (1)
	{
		my @r = $self->replica_ports;
		# attached, and their replication links up (first sync done)
		last if @r >= $masters * $replicas
		  && !grep { $self->node($_)->cli('INFO', 'replication') !~ /master_link_status:up/ } @r;
		die "the cluster's replicas did not attach within 60s" if time > $deadline;
		sleep 0.1;
	}
	note("redis cluster up on ports @{ $self->{ports} }");
	return $self;
}

sub ports { return @{ $_[0]->{ports} }; }
sub node  { return $_[0]->{nodes}{ $_[1] }; }

sub url
{
	my ($self) = @_;
	my @p = grep { $self->{nodes}{$_}->running } @{ $self->{ports} };
	return 'redis://' . join(',', map { "127.0.0.1:$_" } @p) . '/0';
}

sub seed_url { my ($self) = @_; return "redis://127.0.0.1:$self->{ports}[0]/0"; }

# redis-cli against one node; -c follows redirections
sub cli
{
	my ($self, $port, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ RedisSync::Test::redis_cli_bin(), '-c', '-h', '127.0.0.1',
			'-p', $port, @args ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(60));
	chomp $out;
	return $out;
}

# redis-cli against one node, redirections not followed (MOVED and ASK
# replies are returned as they are)
sub node_cli
{
	my ($self, $port, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ RedisSync::Test::redis_cli_bin(), '-h', '127.0.0.1', '-p', $port, @args ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	chomp $out;
	return $out;
}

sub node_id { my ($self, $port) = @_; return $self->node_cli($port, 'CLUSTER', 'MYID'); }

# how many errors of a kind (MOVED, ASK, TRYAGAIN) the masters replied so far
sub error_count
{
	my ($self, $kind) = @_;
	my $n = 0;
	for my $p ($self->master_ports)
	{
		my ($k) = $self->node_cli($p, 'INFO', 'errorstats') =~ /errorstat_$kind:count=(\d+)/;
		$n += $k // 0;
	}
	return $n;
}

# any running node
sub any_port
{
	my ($self) = @_;
	for my $p (@{ $self->{ports} })
	{
		return $p if $self->{nodes}{$p}->running;
	}
	die "no cluster node running";
}

# redis-cli -c against any live node
sub any_cli { my ($self, @args) = @_; return $self->cli($self->any_port, @args); }

# [ [port, role] ... ] from CLUSTER NODES on a live node
sub roles
{
	my ($self) = @_;
	my %role;
	for my $line (split /\n/, $self->cli($self->any_port, 'CLUSTER', 'NODES'))
	{
		my @f = split / /, $line;
		next unless @f >= 3;
		my ($port) = $f[1] =~ /:(\d+)/;
		next if $f[2] =~ /fail/ && !$self->{nodes}{$port}->running;
		$role{$port} = $f[2] =~ /master/ ? 'master' : 'replica';
	}
	return \%role;
}

sub master_ports
{
	my ($self) = @_;
	my $r = $self->roles;
	return sort { $a <=> $b } grep { $r->{$_} eq 'master' && $self->{nodes}{$_}->running } keys %$r;
}

sub replica_ports
{
	my ($self) = @_;
	my $r = $self->roles;
	return sort { $a <=> $b } grep { $r->{$_} eq 'replica' && $self->{nodes}{$_}->running } keys %$r;
}

# the replica of a master (by CLUSTER NODES)
sub replica_of
{
	my ($self, $master_port) = @_;
	my ($id, %replica_master);
	for my $line (split /\n/, $self->cli($self->any_port, 'CLUSTER', 'NODES'))
	{
		my @f = split / /, $line;
		my ($port) = $f[1] =~ /:(\d+)/;
		$id = $f[0] if $port == $master_port;
		$replica_master{$port} = $f[3] if $f[2] =~ /slave/;
	}
	for my $p (keys %replica_master)
	{
		return $p if $replica_master{$p} eq $id && $self->{nodes}{$p}->running;
	}
	return undef;
}

# until every live node says cluster_state:ok and agrees on the slots
sub wait_ok
{
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	while (1)
	{
		my $ok = 1;
		for my $p (@{ $self->{ports} })
		{
			next unless $self->{nodes}{$p}->running;
			my $info = $self->cli($p, 'CLUSTER', 'INFO');
			$ok = 0 unless $info =~ /cluster_state:ok/ && $info =~ /cluster_slots_ok:16384/;
		}
		if ($ok)
		{
			# every node sees the same number of masters with slots
			my $out = $self->cli($self->any_port, '--cluster', 'check', "127.0.0.1:" . $self->any_port);
			return 1 if $out =~ /All 16384 slots covered/ && $out !~ /\[ERR\]/;
		}
		die "redis cluster did not reach cluster_state:ok within the deadline" if time > $deadline;
		sleep 0.1;
	}
}

# A new node joins the cluster (add-node) as a master that owns no slot,
# known to every node; returns its port and node id.  Reshard to it, or
# move a slot by hand (SETSLOT IMPORTING / MIGRATING, MIGRATE).
sub add_master
{
	my ($self) = @_;
	my @masters = $self->master_ports;
	my $seed    = $masters[0];
	my $want    = @masters + 1;
	my $new  = RedisSync::Test::redis_object(
		class        => 'RedisSync::Cluster::Node',
		dir_template => 'rcluster_XXXX',
		port         => cluster_port(),
		extra        => [
			'--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
			'--cluster-node-timeout', 2000,
		]);
	$new->start;
	my $np = $new->{port};
	$self->{nodes}{$np} = $new;    # the helpers (master_ports, wait_ok) see it too
	push @{ $self->{ports} }, $np;
	my $out = $self->node_cli($seed, '--cluster', 'add-node', "127.0.0.1:$np", "127.0.0.1:$seed");
	note("add-node: $out");

	# every node must know the new one before a reshard (redis-cli's check
	# refuses "Nodes don't agree about configuration" otherwise), and the new
	# node the whole cluster (else it answers MIGRATE with CLUSTERDOWN)
	my $agree = sub {
		for my $p (@{ $self->{ports} })
		{
			return 0 unless $self->node_cli($p, 'CLUSTER', 'INFO') =~ /cluster_state:ok/;
			return 0 unless (() = $self->node_cli($p, 'CLUSTER', 'NODES') =~ /master/g) == $want;
		}
		return 1;
	};
	my $deadline = time + 60;
	until ($agree->())
	{
		die "the nodes did not all know the new master $np within 60s" if time > $deadline;
		sleep 0.2;
	}
	return ($np, $self->node_id($np));
}

# psql -c $sql against $node in the background, until the masters replied
# one more error of $kind (TRYAGAIN: a command met a half-done slot
# migration) or psql ended, 60 s at most; returns the IPC::Run handle and
# the references to its stdout and stderr ($h->finish, then $h->result(0))
sub start_sql_until_error
{
	my ($self, $node, $sql, $kind) = @_;
	my $before = $self->error_count($kind);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			$node->installed_command('psql'), '-X', '-At', '-v', 'ON_ERROR_STOP=1',
			'-h', $node->host, '-p', $node->port, '-d', 'postgres', '-c', $sql
		],
		'<', \undef, '>', \$out, '2>', \$err);
	my $deadline = time + 60;
	while (time < $deadline)
	{
		last if $self->error_count($kind) > $before;
		last unless $h->pumpable;
		$h->pump_nb;
		sleep 0.02;
	}
	return ($h, \$out, \$err, $self->error_count($kind) > $before);
}

sub kill_node
{
	my ($self, $port) = @_;
	my $n = $self->{nodes}{$port};
	kill 'KILL', $n->{pid};
	my $deadline = time + 10;
	sleep 0.02 while kill(0, $n->{pid}) && time < $deadline;
	$n->{pid} = undef;
	return;
}

# the key space, every master: DBSIZE summed
sub dbsize
{
	my ($self) = @_;
	my $n = 0;
	$n += $self->cli($_, 'DBSIZE') for $self->master_ports;
	return $n;
}

package RedisSync::Cluster::Node;

use strict;
use warnings;

# a RedisSync::Test::Redis started with the cluster arguments in {extra}
our @ISA = ('RedisSync::Test::Redis');

sub label { return 'cluster node'; }

1;

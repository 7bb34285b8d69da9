# The setup the Redis Cluster tests under a write load share (TAP 141, 142):
# a cluster and a node on it, a pgbench script, pgbench started in the
# background and its result checked.
#
#   my ($c, $node) = RedisSync::ClusterLoad::cluster_and_node('clfail',
#                        extra_conf => "...", node_timeout => 2000);
#   my $script = RedisSync::ClusterLoad::pgbench_script('clfail', $sql);
#   my $job = RedisSync::ClusterLoad::start_pgbench($node, $script, $clients, $seconds);
#   RedisSync::ClusterLoad::wait_connected($node, 'UPDATE acc SET v%', $clients);
#   RedisSync::ClusterLoad::finish_pgbench($job, 'failover');   # 3 assertions
#   RedisSync::ClusterLoad::poll_until('what', sub { ... }, $timeout);
package RedisSync::ClusterLoad;

use strict;
use warnings;

use IPC::Run ();
use Time::HiRes qw(time sleep);
use PostgreSQL::Test::Utils;
use RedisSync::Cluster;
use RedisSync::Test;
use Test::More;

# a cluster of 3 masters with a replica each, and a node whose
# redis_sync.redis_url names its nodes (max_connections 40 for pgbench)
sub cluster_and_node
{
	my ($name, %opts) = @_;
	my $c = RedisSync::Cluster::start_cluster(
		masters  => 3,
		replicas => 1,
		(defined $opts{node_timeout} ? (node_timeout => $opts{node_timeout}) : ()));
	my $node = RedisSync::Test::new_node($name, redis_url => $c->url,
		extra_conf => "max_connections = 40\n" . ($opts{extra_conf} // ''));
	return ($c, $node);
}

# call $cond until it returns true; a failed assertion at the deadline
sub poll_until
{
	my ($what, $cond, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	while (time < $deadline)
	{
		return 1 if $cond->();
		sleep 0.1;
	}
	fail("timed out waiting for $what");
	return 0;
}

# write a pgbench script into the test's temp dir; its path
sub pgbench_script
{
	my ($name, $text) = @_;
	my $script = "$PostgreSQL::Test::Utils::tmp_check/$name.sql";
	open my $fh, '>', $script or die "$script: $!";
	print $fh $text;
	close $fh;
	return $script;
}

# pgbench -c $clients -T $seconds in the background
sub start_pgbench
{
	my ($node, $script, $clients, $seconds) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'pgbench', '-n', '-c', $clients, '-j', $clients, '-T', $seconds,
			'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres'
		],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(600));
	return [ $h, \$out, \$err ];
}

# until $clients backends run a statement LIKE $pattern
sub wait_connected
{
	my ($node, $pattern, $clients) = @_;
	return poll_until('pgbench connected',
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '$pattern'") >= $clients;
		});
}

# pgbench finished, committed more than 100 transactions, none failed
# (that last assertion named no_failures, or "$name: no failed transactions")
sub finish_pgbench
{
	my ($job, $name, %opts) = @_;
	my ($h, $out, $err) = @$job;
	ok($h->finish, "$name: pgbench finished") or diag($$err);
	my ($tx) = $$out =~ /number of transactions actually processed: (\d+)/;
	cmp_ok($tx // 0, '>', 100, "$name: pgbench committed " . ($tx // 0) . ' transactions');
	my ($failed) = $$out =~ /number of failed transactions: (\d+)/;
	is($failed // 0, 0, $opts{no_failures} // "$name: no failed transactions");
	return;
}

1;

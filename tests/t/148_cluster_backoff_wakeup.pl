# Redis Cluster: a commit's wake-up that reaches the worker while it backs
# off between cluster retries is not lost.  The worker's latch is both its
# wake-up and what the cluster backoff waits on; the backoff used to reset
# it, so entries committed while the worker retried a slot the nodes
# disagreed on waited for the next naptime (1 hour here) once the retry
# succeeded.  Now the backoff sets the latch again on its way out.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time sleep);

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my @masters = $c->master_ports;
is(scalar(@masters), 3, 'three masters');

my $node = RedisSync::Test::new_node('clwake', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '60s'\nredis_sync.naptime = '1h'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }

# one node, no redirection following
sub ncli { return $c->node_cli(@_); }

sub node_id { return $c->node_id($_[0]); }

sub moved_count { return $c->error_count('MOVED'); }

# the value of a key, asked of every master (one of them owns it)
sub cluster_hget
{
	my ($key, $field) = @_;
	for my $p (@masters)
	{
		my $v = ncli($p, 'HGET', $key, $field);
		return $v if $v ne '' && $v !~ /MOVED|ASK/;
	}
	return '';
}

sq(q{
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE b (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async', warm => false);
SELECT redis_sync.write_through('b', key_prefix => 'b:', delivery => 'async', warm => false);
});

# the master owning a:1's slot; the slot holds no key yet
my ($pa) = grep { ncli($_, 'GET', 'a:1') !~ /MOVED/ } @masters;
ok(defined $pa, 'slot of a:1 on master A');
my ($pb) = grep { $_ != $pa } @masters;
my $s = ncli($pa, 'CLUSTER', 'KEYSLOT', 'a:1');
isnt(ncli($pa, 'CLUSTER', 'KEYSLOT', 'b:1'), $s, 'b:1 is in another slot');
is(ncli($pa, 'CLUSTER', 'COUNTKEYSINSLOT', $s), '0', 'the slot is empty');

# A says B owns the slot, B says A does: the worker's delivery of a:1
# is redirected both ways and backs off between rounds
is(ncli($pa, 'CLUSTER', 'SETSLOT', $s, 'NODE', node_id($pb)), 'OK', 'A gives the slot to B (A only)');
my $moved0 = moved_count();
sq(q{INSERT INTO a VALUES (1, 'first')});
my $deadline = time + 60;
sleep 0.1 while time < $deadline && moved_count() - $moved0 <= 10;
cmp_ok(moved_count() - $moved0, '>', 10, 'the worker is retrying a:1');

# a commit to b while the worker backs off: its wake-up arrives then
sq(q{INSERT INTO b VALUES (1, 'second')});
my $moved1 = moved_count();
$deadline = time + 60;
sleep 0.1 while time < $deadline && moved_count() - $moved1 <= 5;
cmp_ok(moved_count() - $moved1, '>', 5, 'still retrying after the commit to b');

# the nodes agree again: both entries are delivered, b's without waiting
# for the naptime
is(ncli($pa, 'CLUSTER', 'SETSLOT', $s, 'NODE', node_id($pa)), 'OK', 'A takes the slot back');
ok(defined RedisSync::Compare::wait_for(sub { cluster_hget('a:1', 'v') eq 'first' }, 60),
	'a:1 delivered once the nodes agree');
ok(defined RedisSync::Compare::wait_for(sub { cluster_hget('b:1', 'v') eq 'second' }, 30),
	'b:1 delivered without waiting for the naptime (1 h)');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'the outbox is empty');

done_testing();

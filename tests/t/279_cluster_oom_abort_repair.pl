# tests/t/281_oom_abort_repair_chunks on a Redis Cluster of three masters.
# A strict transaction's push is refused part-way for memory (every master
# at its maxmemory, noeviction): some keys took the new values, the rest
# were refused, and the transaction rolls back while a master is still
# over its maxmemory.  The abort's repair restores the committed images
# all the same: each of its calls starts with an HDEL that needs no memory
# (rs_fence_append_restore), after which Redis runs the rest of the script;
# before, it was refused key by key, and the worker repaired the keys from
# the in-flight markers once the masters had memory.  On a cluster the
# markers are cleared by commands of their own, after every key of the
# repair was applied (publish.c, send_repair: never in the repair's first
# call), so this holds at any chunk_size; the test runs the default
# chunk_size (one call per master) and chunks of 5.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;
use Time::HiRes qw(sleep time);

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('cl_oom_abort', redis_url => $c->url,
	extra_conf => "redis_sync.marker_sweep_interval = '500ms'");
my @masters = $c->master_ports;
is(scalar @masters, 3, 'three masters');

$node->safe_psql('postgres', q{
CREATE TABLE su (id int PRIMARY KEY, v int, pad text);
INSERT INTO su SELECT g, 1, 'small' FROM generate_series(1, 60) g;
SELECT redis_sync.write_through('su', key_prefix => 'su:', consistency => 'strict', warm => false);
SELECT redis_sync.warm('su');
});

sub used_memory
{
	my ($port) = @_;
	my ($m) = $c->node($port)->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
	return $m;
}

sub set_maxmemory
{
	my ($margin) = @_;
	for my $p (@masters)
	{
		$c->node($p)->cli('CONFIG', 'SET', 'maxmemory',
			defined $margin ? used_memory($p) + $margin : 0);
	}
}

sub rolled_back_keys
{
	my $n = 0;
	for my $id (1 .. 60)
	{
		$n++ if $c->cli($masters[0], 'HGET', "su:$id", 'v') eq '2';
	}
	return $n;
}

sub markers
{
	my $n = 0;
	$n += scalar grep { length } split /\n/,
	  $c->node($_)->cli('--scan', '--pattern', 'redis_sync:inflight:*') for @masters;
	return $n;
}

$c->node($_)->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction') for @masters;
for my $chunk (1000, 5)
{
	is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('su')}), '0',
		"chunk_size $chunk: su cached");

	# each master gets about a third of 60 rows of 2 kB: a margin below that
	# lets part of the push through and refuses the rest
	my ($rc, $out, $err, $over, $left) = (0, '', '', 0);
	for (my $margin = 6000; $margin <= 60000; $margin += 3000)
	{
		set_maxmemory($margin);
		($rc, $out, $err) = $node->psql('postgres',
			"SET redis_sync.chunk_size = $chunk; UPDATE su SET v = 2, pad = repeat('z', 2000)");
		$left = rolled_back_keys();
		# a master the keys Redis took left over its maxmemory
		$over = grep {
			my $info = $c->node($_)->cli('INFO', 'memory');
			my ($u) = $info =~ /used_memory:(\d+)/;
			my ($m) = $info =~ /maxmemory:(\d+)/;
			$m > 0 && $u > $m
		} @masters;
		last if $rc != 0 && $over > 0;
		set_maxmemory(undef);
		if ($rc == 0)
		{
			$node->safe_psql('postgres', q{UPDATE su SET v = 1, pad = 'small'});
		}
		else
		{
			sleep 0.1;
		}
	}
	isnt($rc, 0, "chunk_size $chunk: the strict UPDATE fails");
	like($err, qr/OOM|memory/, "chunk_size $chunk: refused for memory");
	cmp_ok($over, '>', 0, "chunk_size $chunk: a master is still over its maxmemory after the abort");
	unlike($err, qr/could not restore/, "chunk_size $chunk: the abort's repair was not refused");
	is($left, 0, "chunk_size $chunk: at the rollback, no key keeps the rolled-back value");

	set_maxmemory(undef);
	my $deadline = time + 30;
	$left = rolled_back_keys();
	while ($left > 0 && time < $deadline)
	{
		sleep 0.2;
		$left = rolled_back_keys();
	}
	is($left, 0, "chunk_size $chunk: no key keeps the rolled-back value once the masters have memory");
	$deadline = time + 30;
	sleep 0.2 while markers() > 0 && time < $deadline;
	is(markers(), 0, "chunk_size $chunk: no in-flight marker is left");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('su')}), '0',
		"chunk_size $chunk: su cache == table");
}

# resync() on the cluster with every master over its maxmemory: the key
# that differs is refused for memory and its row deleted from it instead
# (warm_push.c), per slot
$c->cli($masters[0], 'HSET', 'su:3', 'v', '999');
$c->node($_)->cli('CONFIG', 'SET', 'maxmemory', '1') for @masters;
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.resync('su')});
like($err, qr/OOM|memory/, 'resync() under OOM fails for memory');
is($c->cli($masters[0], 'HGET', 'su:3', 'v'), '', 'the value that differed is deleted, not left');
set_maxmemory(undef);
is($node->safe_psql('postgres', q{SELECT redis_sync.resync('su')}), '1', 'resync() fills it once the masters have memory');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('su')}), '0', 'su cache == table');

$node->stop;
done_testing();

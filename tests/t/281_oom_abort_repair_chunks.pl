# A strict transaction whose push Redis refuses part-way for memory
# (maxmemory, noeviction): its first chunks reached Redis (they took Redis
# over maxmemory: a pad of 2,000 bytes turns a hash into a hash table,
# larger than the commands that wrote it), a later one was refused, and
# the transaction rolls back.  The abort's repair must leave nothing of it
# in Redis: the markers go only with the repair of every key they name.
#
# Before 7b899ee: the repair sent the clears of the transaction's markers
# in its first apply call, whose first write (HDEL) needs no memory, so
# that call ran; the calls after it (more keys than redis_sync.chunk_size)
# were refused key by key.  The markers were gone, the WARNING said the
# worker would repair the keys from them, and the rolled-back values stayed
# cached for good.  Found by the wave 2p chaos run.
#
# Since then every call of the repair starts with an HDEL (of a field no
# marker has when the call does not carry the clears), so Redis over
# maxmemory runs it: the keys are restored at the rollback, and the markers
# cleared after (tests/t/382_oom_abort_held holds Redis over maxmemory at
# the abort for certain).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(sleep);

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('oom_abort_repair_chunks', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '500ms'");

$node->safe_psql('postgres', q{
CREATE TABLE su (id int PRIMARY KEY, v int, pad text);
INSERT INTO su SELECT g, 1, 'small' FROM generate_series(1, 40) g;
SELECT redis_sync.write_through('su', key_prefix => 'su:', consistency => 'strict', warm => false);
SELECT redis_sync.warm('su');
});

sub used_memory
{
	my ($m) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
	return $m;
}

sub rolled_back_keys
{
	my $n = 0;
	for my $id (1 .. 40)
	{
		$n++ if $redis->cli('HGET', "su:$id", 'v') eq '2';
	}
	return $n;
}

$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
for my $bulk_multi ('off', 'on')
{
	is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('su')}), '0',
		"bulk_multi $bulk_multi: su cached");

	# 40 keys in chunks of 5, each chunk about 10 kB more than Redis had:
	# the first chunks fit below maxmemory, a later one does not.  How much
	# a chunk costs Redis depends on the push's form (a MULTI queues its
	# commands first): the margin grows until the push is refused part-way.
	my ($rc, $out, $err, $reached, $left) = (0, '', '', 0);
	for (my $margin = 12000; $margin <= 120000; $margin += 6000)
	{
		$redis->cli('CONFIG', 'SET', 'maxmemory', used_memory() + $margin);
		($rc, $out, $err) = $node->psql('postgres',
			"SET redis_sync.chunk_size = 5; SET redis_sync.bulk_multi = $bulk_multi;\n"
			  . "SELECT repaired AS r0 FROM redis_sync.session_stats() \\gset\n"
			  . "UPDATE su SET v = 2, pad = repeat('z', 2000);\n"
			  . "SELECT repaired - :r0 FROM redis_sync.session_stats();",
			on_error_stop => 0);
		$left = rolled_back_keys();
		# the keys of the chunks Redis took: those the abort repaired, or
		# (before) could not restore; more than one call's worth
		$reached =
		    $out =~ /^\d+$/ && $out > 0 ? $out
		  : $err =~ /could not restore (\d+) Redis keys/ ? $1
		  :                                                0;
		$rc = $err =~ /ERROR/ ? 1 : 0;
		last if $rc != 0 && $reached > 5;
		$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
		if ($rc == 0)
		{
			# the margin let the whole push through: back to the start
			$node->safe_psql('postgres', q{UPDATE su SET v = 1, pad = 'small'});
		}
		else
		{
			# refused whole: nothing to repair, wait for the worker's sweep of
			# the (empty) repair before the next try
			sleep 0.1;
		}
	}
	isnt($rc, 0, "bulk_multi $bulk_multi: the strict UPDATE fails");
	like($err, qr/OOM/, "bulk_multi $bulk_multi: refused for memory");
	cmp_ok($reached, '>', 5,
		"bulk_multi $bulk_multi: more than one chunk of the push reached Redis before the refusal ($reached keys)");
	unlike($err, qr/could not restore/, "bulk_multi $bulk_multi: the abort's repair was not refused");
	is($left, 0, "bulk_multi $bulk_multi: at the rollback, no key keeps the rolled-back value");

	$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
	my $deadline = time + 30;
	$left = rolled_back_keys();
	while ($left > 0 && time < $deadline)
	{
		sleep 0.2;
		$left = rolled_back_keys();
	}
	is($left, 0, "bulk_multi $bulk_multi: no key keeps the rolled-back value once Redis has memory");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('su')}), '0',
		"bulk_multi $bulk_multi: su cache == table");
}

$node->stop;
$redis->stop;
done_testing();

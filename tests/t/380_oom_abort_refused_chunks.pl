# A strict transaction of more keys than the abort repairs exactly (1,000)
# whose push Redis refuses for memory part-way (maxmemory, noeviction).
# The chunks Redis took hold the rolled-back values and their in-flight
# markers; the chunks it refused whole left their keys as they were, the
# committed rows.  The abort knows which is which from the replies: it
# deletes the keys of the chunks Redis took only, and without markers of
# its own (the push's markers name those keys, and the worker pushes their
# committed rows from them).  A delete's first write is its UNLINK, which
# Redis runs even at its maxmemory, where a marker's HSET written first
# was refused with the deletes (helper-112).
#
# The same for a transaction of fewer keys (900), whose abort pushes their
# committed images: only the keys of the chunks Redis took.
#
# Before: the abort repaired every key of the push, 1,200 here (deleted,
# each call with a marker of its own, 7b899ee) or 900: keys Redis had
# refused were deleted too, and left to the worker.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('oom_abort_refused_chunks', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '500ms'");
# big: more keys than the abort repairs exactly (1,000); mid: fewer
my %rows = (big => 1200, mid => 900);
for my $t (sort keys %rows)
{
	$node->safe_psql('postgres', qq{
CREATE TABLE $t (id int PRIMARY KEY, v int, pad text);
INSERT INTO $t SELECT g, 1, 'small' FROM generate_series(1, $rows{$t}) g;
SELECT redis_sync.write_through('$t', key_prefix => '$t:', consistency => 'strict', warm => false);
SELECT redis_sync.warm('$t');
});
}

sub used_memory
{
	my ($m) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
	return $m;
}

# keys of table $t holding the rolled-back value, and keys missing
sub cache_state
{
	my ($t) = @_;
	return RedisSync::Compare::field_counts($redis, $t, $rows{$t}, 'v', '2');
}

$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
for my $case ([ 'big', 'on' ], [ 'big', 'off' ], [ 'mid', 'on' ])
{
	my ($t, $bulk_multi) = @$case;
	my $rows = $rows{$t};
	my $name = "$t, bulk_multi $bulk_multi";
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM redis_sync.verify('$t')}), '0', "$name: cached");

	# 1,200 (900) keys in chunks of 100, the first about 1 MB more than Redis
	# had, the others small: the margin grows until Redis takes part of the
	# push (its HSETs ran) and refuses the rest.  A push Redis
	# refused whole (the chunks streamed ahead count as its memory) changed
	# nothing and is tried again with a larger margin.  The session's
	# repaired count says how many keys the abort sent repairs for.
	my ($out, $err) = ('', '');
	for (my $margin = 300_000; $margin <= 8_000_000; $margin += 200_000)
	{
		$redis->cli('CONFIG', 'SET', 'maxmemory', used_memory() + $margin);
		my $h0 = $redis->cmd_calls('hset');
		(undef, $out, $err) = $node->psql('postgres',
			"SET redis_sync.chunk_size = 100; SET redis_sync.bulk_multi = $bulk_multi;\n"
			  . "SELECT repaired AS r0 FROM redis_sync.session_stats() \\gset\n"
			  . "UPDATE $t SET v = 2, pad = CASE WHEN id <= 100 THEN repeat('z', 10000) ELSE pad END;\n"
			  . "SELECT repaired - :r0 FROM redis_sync.session_stats();",
			on_error_stop => 0);
		last if $err =~ /ERROR/ && $redis->cmd_calls('hset') - $h0 >= 100;
		$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
		next if $err =~ /ERROR/;
		# the margin let the whole push through: back to the start
		$node->safe_psql('postgres', qq{UPDATE $t SET v = 1, pad = 'small'});
	}
	like($err, qr/could not push changes to Redis.*OOM/s, "$name: the strict UPDATE is refused for memory");
	unlike($err, qr/could not restore/, "$name: the abort's repair was not refused");
	my ($rolled, $missing) = cache_state($t);
	is($rolled, 0, "$name: at the rollback, no key shows the rolled-back value");
	# mid: restored from the images the abort kept, none deleted
	is($missing, 0, "$name: at the rollback, no key is missing") if $t eq 'mid';
	# a chunk Redis took (every key) and not every chunk
	ok($out > 0 && $out % 100 == 0 && $out < $rows,
		"$name: the abort repaired the keys of the chunks Redis took only ($out)");

	$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
	RedisSync::Compare::wait_for(sub { ($rolled, $missing) = cache_state($t); $rolled == 0 && $missing == 0 },
		60, 0.2);
	is($rolled,  0, "$name: no key has the rolled-back value once Redis has memory");
	is($missing, 0, "$name: no key stays missing");
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM redis_sync.verify('$t')}), '0',
		"$name: cache == table");
}

$node->stop;
$redis->stop;
done_testing();

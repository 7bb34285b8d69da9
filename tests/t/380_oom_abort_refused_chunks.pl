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
# Before: the abort deleted every key of the push, 1,200 here, each call
# with a marker of its own (7b899ee): keys Redis had refused were deleted
# too, and left to the worker.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(sleep);

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('oom_abort_refused_chunks', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '500ms'");
my $rows = 1200;    # more than the abort repairs exactly (1,000)

$node->safe_psql('postgres', qq{
CREATE TABLE big (id int PRIMARY KEY, v int, pad text);
INSERT INTO big SELECT g, 1, 'small' FROM generate_series(1, $rows) g;
SELECT redis_sync.write_through('big', key_prefix => 'big:', consistency => 'strict', warm => false);
SELECT redis_sync.warm('big');
});

sub used_memory
{
	my ($m) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
	return $m;
}

# HSET commands Redis has run (a push's chunk Redis took ran its 100)
sub hset_calls
{
	my ($n) = $redis->cli('INFO', 'commandstats') =~ /cmdstat_hset:calls=(\d+)/;
	return $n // 0;
}

# keys holding the rolled-back value, and keys missing, by a Lua scan
sub cache_state
{
	my $r = $redis->cli('EVAL', q{
local rolled, missing = 0, 0
for id = 1, tonumber(ARGV[1]) do
  local v = redis.call('HGET', 'big:' .. id, 'v')
  if not v then missing = missing + 1 elseif v == '2' then rolled = rolled + 1 end
end
return rolled .. ' ' .. missing}, '0', $rows);
	return split / /, $r;
}

$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
for my $bulk_multi ('on', 'off')
{
	is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('big')}), '0',
		"bulk_multi $bulk_multi: big cached");

	# 1,200 keys in chunks of 100, the first about 1 MB more than Redis
	# had, the others small: the margin grows until Redis takes part of the
	# push (its HSETs ran) and refuses the rest.  A push Redis
	# refused whole (the chunks streamed ahead count as its memory) changed
	# nothing and is tried again with a larger margin.  The session's
	# repaired count says how many keys the abort sent repairs for.
	my ($out, $err) = ('', '');
	for (my $margin = 300_000; $margin <= 8_000_000; $margin += 200_000)
	{
		$redis->cli('CONFIG', 'SET', 'maxmemory', used_memory() + $margin);
		my $h0 = hset_calls();
		(undef, $out, $err) = $node->psql('postgres',
			"SET redis_sync.chunk_size = 100; SET redis_sync.bulk_multi = $bulk_multi;\n"
			  . "SELECT repaired AS r0 FROM redis_sync.session_stats() \\gset\n"
			  . "UPDATE big SET v = 2, pad = CASE WHEN id <= 100 THEN repeat('z', 10000) ELSE pad END;\n"
			  . "SELECT repaired - :r0 FROM redis_sync.session_stats();",
			on_error_stop => 0);
		last if $err =~ /ERROR/ && hset_calls() - $h0 >= 100;
		$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
		next if $err =~ /ERROR/;
		# the margin let the whole push through: back to the start
		$node->safe_psql('postgres', q{UPDATE big SET v = 1, pad = 'small'});
	}
	like($err, qr/could not push changes to Redis.*OOM/s, "bulk_multi $bulk_multi: the strict UPDATE is refused for memory");
	unlike($err, qr/could not restore/, "bulk_multi $bulk_multi: the abort's deletes were not refused");
	my ($rolled) = cache_state();
	is($rolled, 0, "bulk_multi $bulk_multi: at the rollback, no key shows the rolled-back value");
	# a chunk Redis took (every key) and not every chunk
	ok($out > 0 && $out % 100 == 0 && $out < $rows,
		"bulk_multi $bulk_multi: the abort repaired the keys of the chunks Redis took only ($out)");

	$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
	my $deadline = time + 60;
	my $missing;
	($rolled, $missing) = cache_state();
	while (($rolled > 0 || $missing > 0) && time < $deadline)
	{
		sleep 0.2;
		($rolled, $missing) = cache_state();
	}
	is($rolled,  0, "bulk_multi $bulk_multi: no key has the rolled-back value once Redis has memory");
	is($missing, 0, "bulk_multi $bulk_multi: no key stays missing");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('big')}), '0',
		"bulk_multi $bulk_multi: big cache == table");
}

$node->stop;
$redis->stop;
done_testing();

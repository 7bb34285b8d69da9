# A strict transaction of more keys than the abort repairs exactly (1,000)
# whose push Redis refuses for memory (maxmemory, noeviction), part-way or
# from its first chunk: the chunks Redis took carry in-flight markers, the
# refused ones left their keys as they were.  The abort deletes every key of the push (it has no
# committed images for so many), so the deletes must leave markers of their
# own: once Redis has memory again, every key is back with its committed
# row and nothing of the rolled-back transaction is cached.
#
# Before: the deletes carried no marker, and the keys of the refused chunks
# stayed missing for good (only a resync() brought them back): helper-111,
# 44,000 of 50,000 keys.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('oom_abort_large_repair', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '500ms'");
my $rows = 3000;

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

sub settled
{
	my ($rolled, $missing);
	RedisSync::Compare::wait_for(sub { ($rolled, $missing) = cache_state(); $rolled == 0 && $missing == 0 }, 60, 0.2);
	return ($rolled, $missing);
}

$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
for my $bulk_multi ('on', 'off')
{
	is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('big')}), '0',
		"bulk_multi $bulk_multi: big cached");

	# 3,000 keys in chunks of 200, each chunk about 400 kB more than Redis
	# had: the margin grows until the push is refused.  (Whether a chunk
	# landed first is not asserted: the worker's sweep may already have
	# repaired the keys by the time they are read.)
	my ($rc, $out, $err) = (0, '', '');
	for (my $margin = 300_000; $margin <= 6_000_000; $margin += 300_000)
	{
		$redis->cli('CONFIG', 'SET', 'maxmemory', used_memory() + $margin);
		($rc, $out, $err) = $node->psql('postgres',
			"SET redis_sync.chunk_size = 200; SET redis_sync.bulk_multi = $bulk_multi; "
			  . "UPDATE big SET v = 2, pad = repeat('z', 2000)");
		last if $rc != 0;
		$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
		# the margin let the whole push through: back to the start
		$node->safe_psql('postgres', q{UPDATE big SET v = 1, pad = 'small'});
	}
	isnt($rc, 0, "bulk_multi $bulk_multi: the strict UPDATE fails");
	like($err, qr/OOM/, "bulk_multi $bulk_multi: refused for memory");

	$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
	my ($rolled, $missing) = settled();
	is($rolled, 0, "bulk_multi $bulk_multi: no key keeps the rolled-back value once Redis has memory");
	is($missing, 0, "bulk_multi $bulk_multi: no key stays missing");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('big')}), '0',
		"bulk_multi $bulk_multi: big cache == table");
}

$node->stop;
$redis->stop;
done_testing();

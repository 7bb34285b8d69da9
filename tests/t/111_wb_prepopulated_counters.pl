# Counters of a write-behind table that already has rows are exact without a
# seed: write_behind() schedules none (README, "Counters and Redis losing its
# data": seeding is on first use).  2,000 rows hold view_count = id; the
# application increments keys that do not exist yet (HINCRBY / INCR create
# them from nothing) while the worker drains every 50 ms, so corrections and
# increments interleave; then Redis restarts empty and a second wave races
# the worker's re-seed.  After each wave: table = initial + increments for
# every row, Redis = table, no dead letter.  Hash and string formats.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbprepop', redis => $redis);
my $N     = 2000;

$node->safe_psql('postgres', qq{
CREATE TABLE hs (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0, name text NOT NULL);
INSERT INTO hs SELECT g, g, 'row ' || g FROM generate_series(1, $N) g;
CREATE TABLE st (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0, name text NOT NULL);
INSERT INTO st SELECT g, g, 'row ' || g FROM generate_series(1, $N) g;
SELECT redis_sync.write_behind('hs', key_prefix => 'hs:', columns => '{view_count}',
                               counters => '{view_count}', flush_interval => '50 ms');
SELECT redis_sync.write_behind('st', key_prefix => 'st:', columns => '{view_count}', format => 'string',
                               counters => '{view_count}', flush_interval => '50 ms');
});
is($redis->cli('EXISTS', 'hs:1', "hs:$N", 'st:1', "st:$N"), 0, 'write_behind() seeded nothing: the cache starts empty');

my $dir = "$PostgreSQL::Test::Utils::tmp_check/wbprepop";
mkdir $dir or die "$dir: $!";
my %expect = map { $_ => $_ } 1 .. $N;

sub wave
{
	my ($name, $times) = @_;
	my @cmds;
	# interleaved by round, so every key is incremented again after its
	# first drain may have corrected it
	for my $round (1 .. 5)
	{
		for my $id (1 .. $N)
		{
			next if $round > $times->($id);
			push @cmds, [ 'HINCRBY', "hs:$id", 'view_count', 1 ], [ 'SADD', 'hs:dirty', $id ],
			  [ 'INCR', "st:$id" ], [ 'SADD', 'st:dirty', $id ];
		}
	}
	$expect{$_} += $times->($_) for 1 .. $N;
	RedisSync::WB::write_resp("$dir/$name.resp", @cmds);
	RedisSync::WB::pipe_run($redis, "$dir/$name.resp", scalar @cmds);
	for my $t ([ 'hs', 'hs:dirty' ], [ 'st', 'st:dirty' ])
	{
		my ($secs) = RedisSync::WB::flush_until_clean($node, $redis,
			table => $t->[0], dirty => $t->[1], timeout => 120);
		ok(defined $secs, "$name: $t->[0] drained");
	}
	RedisSync::WB::no_dead_letters($node);
	for my $t ('hs', 'st')
	{
		RedisSync::WB::maps_equal(RedisSync::WB::column_dump($node, $t, 'id', 'view_count'),
			\%expect, "$name: $t: every row is its initial value plus its increments");
	}
	# Redis was corrected to the same sums (no increment counted twice or lost)
	RedisSync::WB::maps_equal(RedisSync::WB::hash_field_dump($redis, 'hs:', 'view_count'),
		\%expect, "$name: hs: Redis holds the table's values");
	RedisSync::WB::maps_equal(RedisSync::WB::hash_field_dump($redis, 'st:', undef, type => 'string'),
		\%expect, "$name: st: Redis holds the table's values");
	is($node->safe_psql('postgres', "SELECT count(*) FROM hs WHERE name <> 'row ' || id"), 0,
		"$name: other columns untouched");
}

wave('first use', sub { 1 + $_[0] % 5 });

# Redis restarts empty: the re-seed and the application's new keys race
my $rid0 = $redis->cli('INFO', 'server') =~ /run_id:(\w+)/ ? $1 : '';
$redis->stop;
$redis->start;
isnt(($redis->cli('INFO', 'server') =~ /run_id:(\w+)/ ? $1 : ''), $rid0, 'Redis restarted empty');
wave('after a restart', sub { 2 });

$node->stop;
$redis->stop;
done_testing();

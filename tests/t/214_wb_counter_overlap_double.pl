# Write-behind counters, keys the application created from nothing (no
# {K}:rs_seeded marker: a table with rows before write_behind(), or any key
# after Redis restarted empty), incremented while the worker drains them.
#
# Found by the wave 2k soak (counters over-counted by a few increments on a
# fresh Redis, and by the whole previous table value on keys recreated after
# an empty Redis restart).  The overlapped drain (wb_overlap.c) sends the
# reads of batch B before batch A is applied; A's apply takes the increment
# path for an unseeded key (table += value read) and corrects Redis
# (HINCRBY by the table's previous value, sets the marker) before its commit.
# When the key was made dirty again and claimed by B, B's read, sent before
# A's correction, also sees it unseeded, with A's increments in it: B adds
# them to the table again, and its correction adds the table value (which
# now includes A's increments) to Redis a second time.  The next drain
# (the marker now set) writes Redis's value as absolute: the counter ends
# higher than every increment the application made.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use IPC::Run ();
use Time::HiRes qw(time);

my $ROWS  = 40;       # one hot key at a time, each unseeded when it starts
my $CHUNK = 25;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wb_overlap_double', redis => $redis);

# rows with counts before write_behind(): their keys are created by the
# application, unseeded (README: "counters of a pre-populated table are
# exact under concurrent increments and restarts")
$node->safe_psql('postgres', qq{
CREATE TABLE c (id int PRIMARY KEY, views bigint NOT NULL DEFAULT 0);
INSERT INTO c SELECT g, 1000 FROM generate_series(1, $ROWS) g;
SELECT redis_sync.write_behind('c', key_prefix => 'c:', counters => '{views}',
                               flush_interval => '10 ms', batch_size => 1);
});

# one client, pipelined: chunks of HINCRBY + SADD of one row for 300 ms,
# each chunk's replies read before the next is sent; then the next row.
# A batch of one member is full, so the next batch is claimed (and read)
# before the first is applied: it holds the row again when its SADD came
# in between.
my $c = $redis->resp;
my %want;
my $acked = 0;
for my $id (1 .. $ROWS)
{
	my $until = time + 0.3;
	while (time < $until)
	{
		$c->write(join '', map {
			RedisSync::RESP::encode('HINCRBY', "c:$id", 'views', 1)
			  . RedisSync::RESP::encode('SADD', 'c:dirty', $id) } 1 .. $CHUNK);
		$c->read for 1 .. 2 * $CHUNK;    # dies on an error reply
		$want{$id} += $CHUNK;
		$acked += $CHUNK;
	}
}
note("$acked increments");
$node->safe_psql('postgres', q{SELECT redis_sync.flush()});
$node->safe_psql('postgres', q{SELECT redis_sync.flush()});

my %got = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{SELECT id, views FROM c});
my @bad = grep { $got{$_} != 1000 + $want{$_} } sort { $a <=> $b } keys %want;
is(join(' ', map { "$_:$got{$_}(want " . (1000 + $want{$_}) . ')' } @bad), '',
	'every counter = its table value before + the increments acknowledged');
my @rbad = grep { $redis->cli('HGET', "c:$_", 'views') != 1000 + $want{$_} } sort { $a <=> $b } keys %want;
is(scalar(@rbad), 0, 'Redis holds the same totals');

# with the fix the race shows as a refused correction, its batch retried
note('refused corrections: '
	  . scalar(() = PostgreSQL::Test::Utils::slurp_file($node->logfile) =~ /returned an error for a counter correction/g));

done_testing();

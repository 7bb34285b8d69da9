# One table, write-through for some columns (id, name) and write-behind for
# another (views) over one Redis hash per row, under the prefix 'cm:'.  One
# session TRUNCATEs the table and INSERTs its 50 rows again, 40 times, while
# the application HINCRBYs views (and SADDs the dirty set) of 60 keys and
# the worker drains every 50 ms; with delivery sync, then async.  A TRUNCATE
# removes the write-through fields only, so:
#   - no increment is lost: the views of all hashes add up to the number of
#     HINCRBYs sent (the TRUNCATE purge deleted whole hashes before);
#   - no truncated row's write-through fields come back: keys 1..50 hold the
#     last INSERT's name, keys 51..60 (rows only the drain inserts) none;
#   - after one more HINCRBY of every key and a flush, the table has the 60
#     rows with Redis's views, and nothing was dead-lettered.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbtruncmixed', redis => $redis,
	extra_conf => "redis_sync.naptime = '100ms'\n");
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

my $dir = "$PostgreSQL::Test::Utils::tmp_check/wbtruncmixed";
mkdir $dir or die "$dir: $!";
srand(211);

for my $delivery (qw(sync async))
{
	my $t = "cm_$delivery";
	my $p = "cm$delivery:";
	$node->safe_psql('postgres', qq{
CREATE TABLE $t (id int PRIMARY KEY, name text, views bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('$t', key_prefix => '$p', columns => '{id,name}', warm => false,
                                delivery => '$delivery');
SELECT redis_sync.write_behind('$t', key_prefix => '$p', dirty_set => '$t-dirty', columns => '{views}',
                               flush_interval => '50 ms');
INSERT INTO $t SELECT g, 'r0' FROM generate_series(1, 50) g;
});

	# the TRUNCATEs run while the increments are sent
	my $s = RedisSync::Test::Session->new($node, 'postgres');
	$s->start_query(join("\n", map {
		"BEGIN; TRUNCATE $t; INSERT INTO $t SELECT g, 'r$_' FROM generate_series(1, 50) g; COMMIT;"
	} 1 .. 40));
	my $sent = 0;
	for my $round (1 .. 60)
	{
		my @cmds;
		for (1 .. 100)
		{
			my $id = 1 + int(rand(60));
			push @cmds, [ 'HINCRBY', "$p$id", 'views', 1 ], [ 'SADD', "$t-dirty", $id ];
		}
		RedisSync::WB::pipe_run($redis,
			RedisSync::WB::write_resp("$dir/$delivery-$round.resp", @cmds), 200);
		$sent += 100;
	}
	my $r = $s->finish_query;
	is($r->{err}, '', "$delivery: the 40 TRUNCATE transactions ran without error");
	$s->quit;

	# every key once more: the drain inserts the rows 51..60 and sets views
	RedisSync::WB::pipe_run($redis, RedisSync::WB::write_resp("$dir/$delivery-last.resp",
		map { ([ 'HINCRBY', "$p$_", 'views', 1 ], [ 'SADD', "$t-dirty", $_ ]) } 1 .. 60), 120);
	$sent += 60;
	my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => $t, dirty => "$t-dirty",
		timeout => 120);
	ok(defined $secs, "$delivery: drained");
	$node->safe_psql('postgres', "SELECT redis_sync.flush('$t')");
	is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.outbox"), '0',
		"$delivery: outbox delivered");

	my $views = RedisSync::WB::hash_field_dump($redis, $p, 'views');
	my $sum = 0;
	$sum += $_ for values %$views;
	is($sum, $sent, "$delivery: no increment lost: the views in Redis add up to the HINCRBYs sent");
	my $names = RedisSync::WB::hash_field_dump($redis, $p, 'name');
	RedisSync::WB::maps_equal($names,
		{ (map { ($_ => 'r40') } 1 .. 50), (map { ($_ => '<nil>') } 51 .. 60) },
		"$delivery: write-through fields: the last INSERT's, none for the rows the drain made");
	RedisSync::WB::maps_equal(RedisSync::WB::column_dump($node, $t, 'id', 'views'), $views,
		"$delivery: the table has the 60 rows with Redis's views");
	RedisSync::WB::no_dead_letters($node, "$delivery: no dead letters");
	$node->safe_psql('postgres', "SELECT redis_sync.unsync('$t', purge => true); DROP TABLE $t");
}

$node->stop;
$redis->stop;
done_testing();

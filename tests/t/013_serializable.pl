# SERIALIZABLE write skew on synced rows.  Two transactions each read both
# rows and change one; the first commits, the second fails with a
# serialization failure AT COMMIT, i.e. after redis_sync has already pushed
# its changes at pre-commit.  The abort callback must repair Redis: afterwards
# the cache holds the committed table state (the failed transaction's pushed
# values, deletes and inserts are undone).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('serializable', redis => $redis);

my $a = RedisSync::Test::session($node);
my $b = RedisSync::Test::session($node);

sub stats
{
	my ($s) = @_;
	my $r = $s->query('SELECT pushed, repaired FROM redis_sync.session_stats()');
	die "session_stats: $r->{err}" if $r->{err} ne '';
	my ($pushed, $repaired) = split /\|/, $r->{out};
	return ($pushed, $repaired);
}

# $b_sql: what the second transaction writes (it must fail at COMMIT)
sub write_skew
{
	my (%c) = @_;
	my $tbl = $c{table};
	my $t = RedisSync::Synced::synced_table($node, $tbl,
		columns => 'id int PRIMARY KEY, v int',
		with    => "consistency => '$c{consistency}'",
		fill    => 'VALUES (1, 100), (2, 100)');
	is($redis->cli('HGET', "$tbl:2", 'v'), '100', "$c{label}: row 2 cached");

	my $r;
	for my $s ($a, $b)
	{
		$r = $s->query("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT sum(v) FROM $tbl;");
		is($r->{out}, '200', "$c{label}: both transactions read both rows");
	}
	$r = $a->query("UPDATE $tbl SET v = v - 150 WHERE id = 1;");
	is($r->{err}, '', "$c{label}: A updates row 1");
	$r = $b->query($c{b_sql});
	is($r->{err}, '', "$c{label}: B writes without error before any commit");

	$r = $a->query('COMMIT;');
	is($r->{err}, '', "$c{label}: A commits");
	is($redis->cli('HGET', "$tbl:1", 'v'), '-50', "$c{label}: A's row 1 pushed");

	my ($pushed0, $repaired0) = stats($b);
	$r = $b->query('COMMIT;');
	like($r->{err},
		qr/ERROR:  could not serialize access due to read\/write dependencies/,
		"$c{label}: B fails with a serialization failure at COMMIT");
	like($r->{err}, qr/during commit attempt/,
		"$c{label}: the failure is raised during the commit attempt")
	  or diag($r->{err});
	my ($pushed1, $repaired1) = stats($b);
	cmp_ok($pushed1 - $pushed0, '>', 0,
		"$c{label}: B's changes were pushed before the failure ("
		  . ($pushed1 - $pushed0) . ' keys)');
	cmp_ok($repaired1 - $repaired0, '>', 0,
		"$c{label}: B's pushed keys were repaired ("
		  . ($repaired1 - $repaired0) . ' keys)');

	is($node->safe_psql('postgres', "SELECT id || '=' || v FROM $tbl ORDER BY id"),
		"1=-50\n2=100", "$c{label}: table holds A's result only");
	$t->cache_matches($redis, "$c{label}: cache == committed table");

	# the repaired state is fenced: a late write of the same keys still works
	$r = $b->query("UPDATE $tbl SET v = 7 WHERE id = 2;");
	is($r->{err}, '', "$c{label}: later update of row 2 commits");
	$t->cache_matches($redis,
		name => "$c{label}: cache == table after a later update");
	return;
}

write_skew(
	label       => 'eventual, update',
	table       => 'ev',
	consistency => 'eventual',
	b_sql       => "UPDATE ev SET v = v - 150 WHERE id = 2;");

write_skew(
	label       => 'strict, update',
	table       => 'st',
	consistency => 'strict',
	b_sql       => "UPDATE st SET v = v - 150 WHERE id = 2;");

# the failed transaction deleted row 2 and inserted row 3: the repair must
# bring k:2 back and remove k:3
write_skew(
	label       => 'eventual, delete + insert',
	table       => 'di',
	consistency => 'eventual',
	b_sql       => "DELETE FROM di WHERE id = 2;\nINSERT INTO di VALUES (3, 300);");

$a->quit;
$b->quit;
$node->stop;
$redis->stop;

done_testing();

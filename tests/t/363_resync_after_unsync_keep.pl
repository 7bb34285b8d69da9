# unsync() without purge keeps the table's keys in Redis, and the table is
# then written while nothing pushes its changes.  Syncing it again with
# write_through() (and its warm, or warm()) must not adopt those keys as
# current: the warm fills only keys Redis lacks, so a key of a row updated
# while unsynced kept the old value, and a key of a row deleted meanwhile
# stayed cached, get() returning the deleted row, for good (until the row's
# next write or a resync()).  Same for invalidate().  Fixed: unsync()
# remembers the prefix (redis_sync._unsynced_prefixes), and the next sync on
# it repairs (write-through: the warm runs resync()) or purges (invalidate).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('unsync_keep', redis => $redis);

for my $policy ('write_through', 'invalidate')
{
	my $tbl = "u_$policy";
	my $p   = "$policy:";
	$node->safe_psql('postgres', qq{
		CREATE TABLE $tbl (id int PRIMARY KEY, v int);
		INSERT INTO $tbl SELECT g, 0 FROM generate_series(1, 3) g;
		SELECT redis_sync.$policy('$tbl', key_prefix => '$p');
	});
	# cache the three rows (the invalidate table through get())
	$node->safe_psql('postgres',
		"SELECT redis_sync.get(NULL::$tbl, g::text) FROM generate_series(1, 3) g");
	is($redis->cli('HGET', "${p}1", 'v'), '0', "$policy: row 1 cached");

	# unsynced: the keys stay, the writes below push nothing
	$node->safe_psql('postgres', qq{
		SELECT redis_sync.unsync('$tbl');
		UPDATE $tbl SET v = 7 WHERE id = 1;
		DELETE FROM $tbl WHERE id = 2;
	});

	# synced again, with the same prefix
	$node->safe_psql('postgres',
		"SELECT redis_sync.$policy('$tbl', key_prefix => '$p')");
	$node->safe_psql('postgres', "SELECT redis_sync.warm('$tbl')")
	  if $policy eq 'write_through';

	{
		my $r1 = $node->safe_psql('postgres',
			"SELECT v FROM redis_sync.get(NULL::$tbl, '1')");
		is($r1, '7', "$policy: get() of a row updated while unsynced returns the table's value");
		my $r2 = $node->safe_psql('postgres',
			"SELECT count(*) FROM redis_sync.get(NULL::$tbl, '2') WHERE id IS NOT NULL");
		is($r2, '0', "$policy: get() of a row deleted while unsynced returns no row");
		my $c1 = $redis->cli('HGET', "${p}1", 'v');
		ok($c1 eq '' || $c1 eq '7', "$policy: Redis holds no stale value of row 1 (got '$c1')");
		is($redis->cli('EXISTS', "${p}2"), '0',
			"$policy: Redis holds no key of the deleted row 2");
	}
	if ($policy eq 'write_through')
	{
		{
			is($node->safe_psql('postgres',
					"SELECT count(*) FROM redis_sync.verify('$tbl')"),
				'0', "$policy: verify() finds nothing after the new sync and its warm");
		}
		# the documented repair
		$node->safe_psql('postgres', "SELECT redis_sync.resync('$tbl')");
		is($node->safe_psql('postgres',
				"SELECT count(*) FROM redis_sync.verify('$tbl')"),
			'0', "$policy: resync() repairs the keys");
		is($node->safe_psql('postgres',
				"SELECT count(*) FROM redis_sync.get(NULL::$tbl, '2') WHERE id IS NOT NULL"),
			'0', "$policy: after resync(), get() of the deleted row returns no row");
	}
}

done_testing();

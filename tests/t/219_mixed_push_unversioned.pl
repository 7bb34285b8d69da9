# One table, write-through for some columns and write-behind for others over
# one hash per row (README "The three policies"; TAP 032).  A row the drain
# created (the application incremented a key the table did not have) has a
# hash in Redis but no version key: the drain's rows are not echoed back, so
# no write-through push ever set one.  The application goes on incrementing
# it (HINCRBY + SADD, acknowledged by Redis), then a SQL UPDATE of a
# write-through column of that row is pushed.
#
# The apply scripts (fence.c) take "data without its version" for an
# evicted version key only when the key holds a field the write names: a
# hash of others' fields only is written like a missing key, and one that
# holds some loses only the fields the write names, so the write-behind
# fields stay.  Found by the wave 2k soak: the script push (bulk_multi off,
# outbox delivery of async or queued changes, Redis Cluster) deleted the
# whole hash, with the increments the drain had not read yet.  The
# MULTI/EXEC push kept them (control case).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('mixed_unversioned', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE m (id int PRIMARY KEY, name text, views bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('m', key_prefix => 'p:', columns => '{id,name}');
SELECT redis_sync.write_behind('m', key_prefix => 'p:', columns => '{views}', counters => '{views}',
                               flush_interval => '1 h');
});

# the application increments a row the table does not have; the drain inserts it
sub drain_created_row
{
	my ($id) = @_;
	$redis->cli('HINCRBY', "p:$id", 'views', 5);
	$redis->cli('SADD', 'p:dirty', $id);
	$node->safe_psql('postgres', "SELECT redis_sync.flush('m')");
	is($node->safe_psql('postgres', "SELECT views FROM m WHERE id = $id"), '5', "row $id created by the drain");
	is($redis->cli('EXISTS', "{p:$id}:rs_version"), '0', "... its hash has no version key");
	# three more increments, acknowledged by Redis, not drained yet
	is($redis->cli('HINCRBY', "p:$id", 'views', 3), '8', "row $id: 3 more increments acknowledged");
	$redis->cli('SADD', 'p:dirty', $id);
}

sub views_after_drain
{
	my ($id) = @_;
	$node->safe_psql('postgres', "SELECT redis_sync.flush('m')");
	return $node->safe_psql('postgres', "SELECT views FROM m WHERE id = $id");
}

# control: the MULTI/EXEC push (single Redis >= 6.2, bulk_multi on)
drain_created_row(1);
$node->safe_psql('postgres', "UPDATE m SET name = 'one' WHERE id = 1");
is($redis->cli('HGET', 'p:1', 'views'), '8', 'MULTI push: the undrained write-behind field is kept');
is(views_after_drain(1), '8', 'MULTI push: every acknowledged increment reaches the table');

# the script push
drain_created_row(2);
$node->safe_psql('postgres', "SET redis_sync.bulk_multi = off; UPDATE m SET name = 'two' WHERE id = 2");
is($redis->cli('HGET', 'p:2', 'views'), '8', 'script push: the undrained write-behind field is kept');
is(views_after_drain(2), '8', 'script push: every acknowledged increment reaches the table');

# outbox delivery (delivery => async)
$node->safe_psql('postgres',
	"SELECT redis_sync.write_through('m', key_prefix => 'p:', columns => '{id,name}', delivery => 'async')");
drain_created_row(3);
$node->safe_psql('postgres', "UPDATE m SET name = 'three' WHERE id = 3");
$node->safe_psql('postgres', "SELECT redis_sync.flush()");
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), '0', 'async: the UPDATE was delivered');
is($redis->cli('HGET', 'p:3', 'views'), '8', 'async delivery: the undrained write-behind field is kept');
is(views_after_drain(3), '8', 'async delivery: every acknowledged increment reaches the table');

# the version lost while the hash holds write-through and write-behind
# fields: the write-through fields are dropped (missing, never stale), the
# write-behind ones stay
$node->safe_psql('postgres',
	"SELECT redis_sync.write_through('m', key_prefix => 'p:', columns => '{id,name}', delivery => 'sync')");
$node->safe_psql('postgres', "UPDATE m SET name = 'two again' WHERE id = 2");
is($redis->cli('HGET', 'p:2', 'name'), 'two again', 'row 2 cached with its version');
$redis->cli('DEL', '{p:2}:rs_version');
is($redis->cli('HINCRBY', 'p:2', 'views', 2), '10', 'row 2: 2 more increments acknowledged');
$redis->cli('SADD', 'p:dirty', 2);
$node->safe_psql('postgres', "SET redis_sync.bulk_multi = off; UPDATE m SET name = 'two, third' WHERE id = 2");
is($redis->cli('HEXISTS', 'p:2', 'name'), '0', 'version lost: the write-through field is dropped');
is($redis->cli('HGET', 'p:2', 'views'), '10', '... the write-behind field stays');
is(views_after_drain(2), '10', '... and is drained');
$node->safe_psql('postgres', "SET redis_sync.bulk_multi = off; UPDATE m SET name = 'two, fourth' WHERE id = 2");
is($redis->cli('HGET', 'p:2', 'name'), 'two, fourth', 'the next write caches the field again');

done_testing();

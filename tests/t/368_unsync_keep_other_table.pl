# The keys an unsync() without purge leaves are repaired by the next sync on
# an overlapping prefix whichever table it is: another table synced on the
# same prefix gets its keys rewritten and the unsynced table's other keys
# deleted; a table synced under a longer prefix inside the remembered one
# repairs its own keys and leaves the record for the rest, which the next
# sync on the shorter prefix repairs; a repair write_through() queued and
# invalidate() overtook purges instead.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('unsync_other', redis => $redis);

sub records
{
	return $node->safe_psql('postgres',
		'SELECT coalesce(string_agg(key_prefix, \',\' ORDER BY key_prefix), \'\') FROM redis_sync._unsynced_prefixes');
}

# 1. another table on the same prefix
$node->safe_psql('postgres', q{
	CREATE TABLE sa (id int PRIMARY KEY, v int);
	INSERT INTO sa SELECT g, 0 FROM generate_series(1, 3) g;
	SELECT redis_sync.write_through('sa', key_prefix => 'sh:');
	SELECT redis_sync.warm('sa');
	SELECT redis_sync.unsync('sa');
	CREATE TABLE sd (id int PRIMARY KEY, v int);
	INSERT INTO sd VALUES (1, 11);
	SELECT redis_sync.write_through('sd', key_prefix => 'sh:');
});
ok(defined RedisSync::Compare::wait_for(sub {
		$redis->cli('HGET', 'sh:1', 'v') eq '11'
		  && $redis->cli('EXISTS', 'sh:2', 'sh:3') eq '0' }, 30),
	'another table synced on the prefix: its key rewritten, the old table\'s others deleted');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('sd')"), '0',
	'verify() of the new table clean');
is(records(), '', 'the record is forgotten');

# 2. a longer prefix inside the remembered one
$node->safe_psql('postgres', q{
	CREATE TABLE oa (k text PRIMARY KEY, v int);
	INSERT INTO oa VALUES ('x:1', 0), ('y', 0);
	SELECT redis_sync.write_through('oa', key_prefix => 'ov:');
	SELECT redis_sync.warm('oa');
	SELECT redis_sync.unsync('oa');
	UPDATE oa SET v = 9 WHERE k = 'y';
	CREATE TABLE ob (id int PRIMARY KEY, v int);
	INSERT INTO ob VALUES (1, 5);
	SELECT redis_sync.write_through('ob', key_prefix => 'ov:x:');
});
ok(defined RedisSync::Compare::wait_for(sub {
		$redis->cli('HGET', 'ov:x:1', 'v') eq '5' }, 30),
	'a table under a longer prefix: its key holding the old table\'s row is rewritten');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('ob')"), '0',
	'verify() of the table under the longer prefix clean');
is(records(), 'ov:', 'the shorter record stays for the keys outside the longer prefix');

# the old table synced again on its prefix (the other one unsynced with purge)
$node->safe_psql('postgres', q{
	SELECT redis_sync.unsync('ob', purge => true);
	SELECT redis_sync.write_through('oa', key_prefix => 'ov:');
});
ok(defined RedisSync::Compare::wait_for(sub {
		$redis->cli('HGET', 'ov:y', 'v') eq '9' }, 30),
	'synced again on the remembered prefix: the row updated while unsynced is rewritten');
ok(defined RedisSync::Compare::wait_for(sub {
		$node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('oa')") eq '0' }, 30),
	'verify() clean');
is(records(), '', 'the record is forgotten');

# 3. unsync and sync again in one transaction: the keys are repaired (not stale, harmless)
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT redis_sync.unsync('oa');
	UPDATE oa SET v = 10 WHERE k = 'y';
	SELECT redis_sync.write_through('oa', key_prefix => 'ov:');
	COMMIT;
});
ok(defined RedisSync::Compare::wait_for(sub {
		$redis->cli('HGET', 'ov:y', 'v') eq '10' }, 30),
	'unsync and sync in one transaction: the row updated between is in Redis');
is(records(), '', 'nothing left remembered');

# 4. write_through() queues the repair, then invalidate() (before the worker
# ran it, which ignores a table no longer write-through): the keys are purged
$node->safe_psql('postgres', q{
	CREATE TABLE wi (id int PRIMARY KEY, v int);
	INSERT INTO wi SELECT g, 0 FROM generate_series(1, 3) g;
	SELECT redis_sync.write_through('wi', key_prefix => 'wi:');
	SELECT redis_sync.warm('wi');
	SELECT redis_sync.unsync('wi');
	DELETE FROM wi WHERE id = 2;
	BEGIN;
	SELECT redis_sync.write_through('wi', key_prefix => 'wi:');
	SELECT redis_sync.invalidate('wi', key_prefix => 'wi:');
	COMMIT;
});
is($redis->cli('EXISTS', 'wi:2'), '0',
	'write_through() then invalidate() after an unsync: the stale key of a deleted row is purged');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM redis_sync.get(NULL::wi, '2') WHERE id IS NOT NULL"),
	'0', 'get() of the deleted row returns no row');

done_testing();

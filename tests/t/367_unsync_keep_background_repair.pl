# unsync() without purge leaves the table's keys in Redis, stale as soon as
# the unsynced table is written.  The next write_through() on the prefix
# must repair them in its background warm (no warm() or resync() called):
# a key whose row changed is rewritten, a key without a row deleted, also
# with warm => false and when the table was emptied meanwhile.  The record
# of the unsync is forgotten after, so a later sync deletes nothing (keys
# an application keeps under a prefix stay); an unsync with purge records
# nothing; a non-owner cannot record or claim a prefix of another's table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('unsync_bg', redis => $redis);

sub stale_gone
{
	my ($p) = @_;
	my $c1 = $redis->cli('HGET', "${p}1", 'v');
	return ($c1 eq '7' && $redis->cli('EXISTS', "${p}2") eq '0');
}

# 1. warm => true (the default) and 2. warm => false: the worker repairs
for my $warm ('true', 'false')
{
	my $tbl = "bg_$warm";
	my $p   = "bg$warm:";
	$node->safe_psql('postgres', qq{
		CREATE TABLE $tbl (id int PRIMARY KEY, v int);
		INSERT INTO $tbl SELECT g, 0 FROM generate_series(1, 3) g;
		SELECT redis_sync.write_through('$tbl', key_prefix => '$p');
		SELECT redis_sync.warm('$tbl');
	});
	is($redis->cli('HGET', "${p}2", 'v'), '0', "warm => $warm: row 2 cached");
	$node->safe_psql('postgres', qq{
		SELECT redis_sync.unsync('$tbl');
		UPDATE $tbl SET v = 7 WHERE id = 1;
		DELETE FROM $tbl WHERE id = 2;
		SELECT redis_sync.write_through('$tbl', key_prefix => '$p', warm => $warm);
	});
	ok(defined RedisSync::Compare::wait_for(sub { stale_gone($p) }, 30),
		"warm => $warm: the background repair rewrote row 1 and deleted row 2's key");
	is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('$tbl')"),
		'0', "warm => $warm: verify() clean after the background repair");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM redis_sync.get(NULL::$tbl, '2') WHERE id IS NOT NULL"),
		'0', "warm => $warm: get() of the deleted row returns no row");
}

# 3. the table emptied while unsynced: nothing to warm, the keys still go
$node->safe_psql('postgres', q{
	CREATE TABLE bg_empty (id int PRIMARY KEY, v int);
	INSERT INTO bg_empty SELECT g, 0 FROM generate_series(1, 3) g;
	SELECT redis_sync.write_through('bg_empty', key_prefix => 'bgempty:');
	SELECT redis_sync.warm('bg_empty');
});
is($redis->cli('EXISTS', 'bgempty:3'), '1', 'empty: row 3 cached');
$node->safe_psql('postgres', q{
	SELECT redis_sync.unsync('bg_empty');
	DELETE FROM bg_empty;
	SELECT redis_sync.write_through('bg_empty', key_prefix => 'bgempty:');
});
ok(defined RedisSync::Compare::wait_for(sub {
		$redis->cli('EXISTS', 'bgempty:1', 'bgempty:2', 'bgempty:3') eq '0' }, 30),
	'empty: the keys of the rows deleted while unsynced are deleted');

# the records are forgotten once claimed: nothing is left to repair
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync._unsynced_prefixes'),
	'0', 'the unsync records are forgotten after the new syncs');

# 4. a later sync (no unsync without purge since) deletes no key of the application
$redis->cli('SET', 'bgtrue:app-owned', 'x');
$node->safe_psql('postgres', q{
	SELECT redis_sync.write_through('bg_true', key_prefix => 'bgtrue:');
	SELECT redis_sync.warm('bg_true');
});
is($redis->cli('GET', 'bgtrue:app-owned'), 'x',
	'a sync with no unsync record before it leaves other keys under the prefix');

# 5. unsync(purge => true) records nothing
$node->safe_psql('postgres', "SELECT redis_sync.unsync('bg_false', purge => true)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync._unsynced_prefixes'),
	'0', 'unsync(purge => true) records nothing');

# 6. the record and the claim are the table owner's only
$node->safe_psql('postgres', q{
	CREATE ROLE bg_other LOGIN;
	GRANT USAGE ON SCHEMA redis_sync TO bg_other;
});
my ($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE bg_other; SELECT redis_sync._unsynced_note('bg_true', 'bgtrue:')");
like($err, qr/must be owner of table bg_true/, 'a non-owner cannot record a prefix');
($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE bg_other; SELECT redis_sync._unsynced_claim('bg_true')");
like($err, qr/must be owner of table bg_true/, 'a non-owner cannot claim a prefix');
($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE bg_other; SELECT * FROM redis_sync._unsynced_prefixes");
like($err, qr/permission denied/, 'the records are not readable by others');

done_testing();

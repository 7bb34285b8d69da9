# A transaction that synced or unsynced a table and then dropped the
# extension failed at COMMIT: the claims' pre-commit step read
# redis_sync.tables, gone with the extension ("relation redis_sync.tables
# does not exist"), so the DROP EXTENSION rolled back (and a claim the sync
# had recorded stayed behind).  Now that step is skipped when the extension
# is gone, and every claim of the database is released after the commit.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Claims;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('drop_after_sync', redis => $redis);

sub sq { return $node->safe_psql(@_); }
my $cl = RedisSync::Claims->new($node, $redis);

my %cases = (
	unsync => "SELECT redis_sync.unsync('t')",
	sync   => "SELECT redis_sync.write_through('u', key_prefix => 'syncu:', warm => false)",
	wb     => "SELECT redis_sync.write_behind('u', key_prefix => 'wbu:')",
);
for my $db (sort keys %cases)
{
	sq('postgres', "CREATE DATABASE $db");
	sq($db, "CREATE EXTENSION redis_sync;
	         CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY, v text);
	         SELECT redis_sync.write_through('t', key_prefix => '$db:', warm => false)");
	my ($ret, $out, $err) = $node->psql($db,
		"BEGIN; $cases{$db}; DROP EXTENSION redis_sync CASCADE; COMMIT;");
	unlike($err, qr/ERROR/, "$db, then DROP EXTENSION: no error");
	is($cl->has_ext($db), '0', '... the extension is dropped');
	is($cl->holder("$db:"), '', '... and the claim of t released');
}
is($cl->holder('syncu:'), '', 'the claim the sync recorded in that transaction is released');
is($cl->holder('wbu:'), '', 'so is the write-behind one');
is($redis->cli('HLEN', 'redis_sync:claims'), '0', 'no claim is left');

$node->stop;
$redis->stop;
done_testing();

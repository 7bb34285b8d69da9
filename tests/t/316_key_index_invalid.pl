# Review (keys): write_through() checks that key_columns match a unique
# index, but took an INVALID one: a CREATE UNIQUE INDEX CONCURRENTLY that
# failed on duplicates leaves its index behind, invalid and not enforced.
# The table was synced on it, two rows shared each key, and the cache held
# one of them (verify: different value).  Likewise the check that keeps the
# key's index from being dropped (TAP 313) must not count an invalid index.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('key_index_invalid', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE inv (id int NOT NULL, v text);
INSERT INTO inv VALUES (1, 'a'), (1, 'b');
});
my ($rc, $out, $err) = $node->psql('postgres', 'CREATE UNIQUE INDEX CONCURRENTLY inv_id ON inv (id)');
isnt($rc, 0, 'the concurrent unique index build fails on the duplicates');
is($node->safe_psql('postgres', "SELECT indisvalid FROM pg_index WHERE indexrelid = 'inv_id'::regclass"),
	'f', 'and leaves an invalid index');

($rc, $out, $err) = $node->psql('postgres',
	"SELECT redis_sync.write_through('inv', key_prefix => 'inv:', key_columns => '{id}', warm => false)");
isnt($rc, 0, 'write_through() refuses key_columns whose only unique index is invalid');
like($err, qr/do not match a primary key or unique index/, 'with the usual error') or diag $err;

$node->psql('postgres', "INSERT INTO inv VALUES (2, 'c'), (2, 'd')");
if ($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.tables WHERE key_prefix = 'inv:'") eq '1')
{
	is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('inv')"),
		'0', 'verify(inv) clean');
}

# a valid index and an invalid one on the same columns: dropping the valid
# one unsyncs the table
$node->safe_psql('postgres', q{
CREATE TABLE inv2 (id int NOT NULL, v text);
CREATE UNIQUE INDEX inv2_ok ON inv2 (id);
INSERT INTO inv2 VALUES (1, 'a');
SELECT redis_sync.write_through('inv2', key_prefix => 'inv2:', key_columns => '{id}', warm => false);
});
# an invalid unique index on inv2 (id): built concurrently while a
# duplicate is inserted is hard to time; a failed build over inv2 itself
# is impossible (its rows are unique), so mark one invalid the way a failed
# REINDEX CONCURRENTLY leaves it, as a superuser
$node->safe_psql('postgres', q{
CREATE UNIQUE INDEX inv2_bad ON inv2 (id);
UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'inv2_bad'::regclass;
});
($rc, $out, $err) = $node->psql('postgres', 'DROP INDEX inv2_ok');
like($err, qr/table (public\.)?inv2 is no longer synced/,
	'dropping the valid index while only an invalid one is left unsyncs the table') or diag $err;

$node->stop;
$redis->stop;
done_testing();

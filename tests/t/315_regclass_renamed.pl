# Review (odd types): a reg* column (regclass, regtype, ...) is cached as the
# object's schema-qualified name, the text of the moment.  Renaming or
# moving the object named changes the text of the row's value without any
# write to the synced table: the key keeps the old name, verify() reports
# it, and get() reads the old name back as whatever object has that name
# now (another table's OID).  Not fixed (README, Limitations): the tests
# are TODO so that they show the gap without failing the suite.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('regclass_rename', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE target1 (x int);
CREATE TABLE refs (id int PRIMARY KEY, r regclass);
SELECT redis_sync.write_through('refs', key_prefix => 'refs:', warm => false);
CREATE TABLE refsi (id int PRIMARY KEY, r regclass);
SELECT redis_sync.invalidate('refsi', key_prefix => 'refsi:');
INSERT INTO refs VALUES (1, 'target1');
INSERT INTO refsi VALUES (1, 'target1');
SELECT * FROM redis_sync.get(NULL::refsi, '1');
ALTER TABLE target1 RENAME TO target2;
CREATE TABLE target1 (y int);
});

TODO:
{
	local $TODO = 'reg* values are not followed through renames of the objects they name';
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM redis_sync.verify('refs') WHERE problem <> 'missing in cache'"),
		'0', 'verify(refs): no stale key after the table named was renamed');
	is($node->safe_psql('postgres',
			"SELECT r::oid = 'target2'::regclass::oid FROM redis_sync.get(NULL::refsi, '1')"),
		't', 'get() returns the OID the row holds, not the new target1');
}

$node->stop;
$redis->stop;
done_testing();

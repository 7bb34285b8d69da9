# Review (odd types and DDL): a synced table's column whose type is another
# table's row type.  ALTER TYPE of a composite type removes the cached keys
# of tables with a column of that type (their text changed), but the same
# change made by ALTER TABLE on the table behind the row type (ADD, DROP,
# RENAME COLUMN) left them: the hash kept '("main st",1)', the json kept the
# old attribute names, and after DROP COLUMN zip, get() read the stale text
# as the new type: city = '1' where the table has NULL.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('rowtype_alter', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE addr (street text, zip int);
CREATE TABLE person (id int PRIMARY KEY, a addr, a2 addr[], n int NOT NULL DEFAULT 0);
CREATE TABLE personj (id int PRIMARY KEY, a addr, n int NOT NULL DEFAULT 0);
CREATE TABLE persono (id int PRIMARY KEY, a addr);
SELECT redis_sync.write_through('person', key_prefix => 'person:', warm => false);
SELECT redis_sync.write_through('personj', key_prefix => 'personj:', format => 'json', warm => false);
SELECT redis_sync.invalidate('persono', key_prefix => 'persono:');
INSERT INTO person VALUES (1, ROW('main st', 1), ARRAY[ROW('x', 2)::addr]);
INSERT INTO personj VALUES (1, ROW('main st', 1));
INSERT INTO persono VALUES (1, ROW('main st', 1));
SELECT * FROM redis_sync.get(NULL::persono, '1');
});
is($redis->cli('EXISTS', 'persono:1'), '1', 'the invalidate row is cached by get()');

sub clean
{
	my ($what) = @_;
	for my $t (qw(person personj))
	{
		my $v = $node->safe_psql('postgres',
			"SELECT coalesce(string_agg(key || ' ' || problem, '; '), '') FROM redis_sync.verify('$t')"
			  . " WHERE problem <> 'missing in cache'");
		is($v, '', "$what: verify($t) finds no stale key");
	}
	my $got = $node->safe_psql('postgres', "SELECT a::text FROM redis_sync.get(NULL::persono, '1')");
	is($got, $node->safe_psql('postgres', 'SELECT a::text FROM persono WHERE id = 1'),
		"$what: get() of the invalidate table returns the table's value");
}

$node->safe_psql('postgres', 'ALTER TABLE addr ADD COLUMN city text');
clean('ADD COLUMN');
$node->safe_psql('postgres', 'ALTER TABLE addr RENAME COLUMN street TO road');
$node->safe_psql('postgres', "SELECT * FROM redis_sync.get(NULL::persono, '1')");
$node->safe_psql('postgres', "UPDATE person SET n = n + 1; UPDATE personj SET n = n + 1");
clean('RENAME COLUMN');
$node->safe_psql('postgres', 'ALTER TABLE addr DROP COLUMN zip');
clean('DROP COLUMN');
# an ALTER TABLE of a table whose row type nothing synced uses keeps the
# cache (the synced table's own ALTER TABLE included: nothing has its type)
$node->safe_psql('postgres', "UPDATE person SET n = n + 1");
is($redis->cli('EXISTS', 'person:1'), '1', 'a write fills the key again');
$node->safe_psql('postgres', 'CREATE TABLE other (x int); ALTER TABLE other ADD COLUMN y int');
$node->safe_psql('postgres', 'ALTER TABLE other RENAME COLUMN y TO z; ALTER TABLE person ADD COLUMN extra int');
is($redis->cli('EXISTS', 'person:1'), '1', 'an unrelated ALTER TABLE removes nothing');

# the row type of an inheritance child, changed by an ALTER TABLE of its
# parent; a view's row type, changed by CREATE OR REPLACE VIEW and ALTER
# VIEW ... RENAME COLUMN
$node->safe_psql('postgres', q{
CREATE TABLE base (a text);
CREATE TABLE child (b int) INHERITS (base);
CREATE TABLE holder (id int PRIMARY KEY, c child);
CREATE VIEW vw AS SELECT 1 AS a;
CREATE TABLE holder2 (id int PRIMARY KEY, c vw);
CREATE TABLE holder3 (id int PRIMARY KEY, c vw);
SELECT redis_sync.write_through('holder', key_prefix => 'holder:', warm => false);
SELECT redis_sync.write_through('holder2', key_prefix => 'holder2:', warm => false);
SELECT redis_sync.write_through('holder3', key_prefix => 'holder3:', format => 'json', warm => false);
INSERT INTO holder VALUES (1, ROW('x', 1));
INSERT INTO holder2 VALUES (1, ROW(1));
INSERT INTO holder3 VALUES (1, ROW(1));
ALTER TABLE base ADD COLUMN z int;
CREATE OR REPLACE VIEW vw AS SELECT 1 AS a, 2 AS b;
});
for my $t (qw(holder holder2 holder3))
{
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM redis_sync.verify('$t') WHERE problem <> 'missing in cache'"),
		'0', "verify($t) finds no stale key");
}
$node->safe_psql('postgres', q{
DELETE FROM holder3; INSERT INTO holder3 VALUES (1, ROW(1, 2));
ALTER VIEW vw RENAME COLUMN b TO bb;
});
is($node->safe_psql('postgres',
		"SELECT count(*) FROM redis_sync.verify('holder3') WHERE problem <> 'missing in cache'"),
	'0', 'verify(holder3) finds no stale key after ALTER VIEW ... RENAME COLUMN');

$node->stop;
$redis->stop;
done_testing();

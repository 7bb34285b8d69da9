# The key-index guard (_on_sql_drop) checks every synced table whenever any
# index or constraint is dropped.  Ordinary DDL on synced tables (renaming
# the key column, retyping it, replacing the primary key in one ALTER
# TABLE) must leave a state in which unrelated drops still work, and the
# guard must still act on dropping the key's index afterwards (the table
# is unsynced).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('keyguard', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE k (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('k', key_prefix => 'k:');
CREATE TABLE kb (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT redis_sync.write_behind('kb', key_prefix => 'kb:', flush_interval => '1 h');
});
my @steps = (
	'ALTER TABLE k RENAME COLUMN id TO "Key Id"',
	'ALTER TABLE kb RENAME COLUMN id TO ident',
	'ALTER TABLE k ALTER COLUMN "Key Id" TYPE bigint',
	'ALTER TABLE k RENAME CONSTRAINT k_pkey TO k_key',
	'ALTER INDEX k_key RENAME TO k_key2',
	'REINDEX TABLE k',
	'REINDEX INDEX CONCURRENTLY k_key2',
	'CREATE TABLE other (id int PRIMARY KEY)',
	'DROP TABLE other',
	'CREATE TABLE other2 (id int PRIMARY KEY, u int UNIQUE)',
	'ALTER TABLE other2 DROP CONSTRAINT other2_u_key',
);
for my $s (@steps)
{
	my ($rc, $out, $err) = $node->psql('postgres', $s);
	is($rc, 0, "runs: $s") or diag($err);
}
is(sq(q{SELECT string_agg(relid::text || ':' || key_columns::text, ' ' ORDER BY relid::text) FROM redis_sync.tables}),
	'k:{"Key Id"} kb:{ident}', 'key_columns follow the renames');
my ($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE kb DROP CONSTRAINT kb_pkey');
like($err, qr/table (public\.)?kb is no longer synced write-behind/,
	'dropping the key constraint of kb afterwards still unsyncs it') or diag $err;
is(sq(q{SELECT string_agg(relid::text, ' ') FROM redis_sync.tables}), 'k', 'k stays synced');

# the row-type purge (_on_type_change, now also on ALTER TABLE, CREATE VIEW
# and ALTER VIEW) on ordinary DDL of a plain role: no error, and no purge of
# a synced table that uses none of the changed row types
sq(q{
CREATE ROLE plain LOGIN;
CREATE SCHEMA ps AUTHORIZATION plain;
CREATE TABLE addr (street text, city text);
CREATE TABLE cust (id int PRIMARY KEY, home addr);
SELECT redis_sync.write_through('cust', key_prefix => 'cust:');
INSERT INTO cust VALUES (1, ROW('main', 'x')), (2, ROW('side', 'y'));
INSERT INTO k VALUES (1, 'a');
});
is($redis->cli('EXISTS', 'cust:1', 'cust:2', 'k:1'), '3', 'cached');
for my $s (
	'CREATE TEMP TABLE tt (a int); ALTER TABLE tt ADD COLUMN b int; ALTER TABLE tt RENAME COLUMN a TO c',
	'CREATE TABLE ps.p (a int); ALTER TABLE ps.p ADD COLUMN b addr; ALTER TABLE ps.p DROP COLUMN a',
	'CREATE VIEW ps.v AS SELECT 1 AS a; CREATE OR REPLACE VIEW ps.v AS SELECT 1 AS a, 2 AS b; ALTER VIEW ps.v RENAME COLUMN b TO c',
	q{CREATE FUNCTION ps.f() RETURNS void LANGUAGE plpgsql AS $$BEGIN ALTER TABLE ps.p ADD COLUMN z int; END$$; SELECT ps.f()},
	'ALTER TABLE ps.p ALTER COLUMN z TYPE bigint')
{
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE plain; $s");
	is($rc, 0, "plain role runs: $s") or diag($err);
}
is($redis->cli('EXISTS', 'cust:1', 'cust:2', 'k:1'), '3', 'no synced table purged by unrelated DDL');
sq(q{ALTER TABLE addr ADD COLUMN zip text});
is($redis->cli('EXISTS', 'cust:1', 'cust:2'), '0', 'ALTER TABLE of the row type cust uses purges cust');
is($redis->cli('EXISTS', 'k:1'), '1', '... and not k');
done_testing();

# The key-index guard (_on_sql_drop) checks every synced table whenever any
# index or constraint is dropped.  Ordinary DDL on synced tables (renaming
# the key column, retyping it, replacing the primary key in one ALTER
# TABLE) must leave a state in which unrelated drops still work, and the
# guard must still refuse dropping the key's index afterwards.
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
my ($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE k DROP CONSTRAINT k_key');
isnt($rc, 0, 'dropping the key constraint of k is still refused');
($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE kb DROP CONSTRAINT kb_pkey');
isnt($rc, 0, 'dropping the key constraint of kb is still refused');
is(sq(q{SELECT string_agg(relid::text || ':' || key_columns::text, ' ' ORDER BY relid::text) FROM redis_sync.tables}),
	'k:{"Key Id"} kb:{ident}', 'key_columns follow the renames');
done_testing();

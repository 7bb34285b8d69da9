# pg_restore --clean over a database with synced tables: the restore first
# drops the dump's objects in reverse order, the primary keys (ALTER TABLE
# ... DROP CONSTRAINT) before their tables.  The guard that refused the drop
# of a synced table's key index (_on_sql_drop) made such a restore fail
# (--exit-on-error, --single-transaction), and with --exit-on-error it
# stopped after the restore's DROP TRIGGER of the capture triggers had
# committed: the table stayed configured as synced with no trigger.  Now
# the drop unsyncs the table (a WARNING), the restore goes on, and the
# restored database syncs as before.  (A partitioned table's --clean
# restore fails in PostgreSQL itself, "cannot drop inherited constraint",
# with or without the extension: not covered.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('restoreclean', redis => $redis);
$node->safe_psql('postgres', q{
CREATE TABLE plain (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('plain', key_prefix => 'plain:');
CREATE TABLE other (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('other', key_prefix => 'other:', delivery => 'async');
INSERT INTO plain VALUES (1, 'a'), (2, 'b');
INSERT INTO other VALUES (1, 'x');
});
my $dir = PostgreSQL::Test::Utils::tempdir();
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$dir/db.dump", '-d', $node->connstr('postgres') ], 'pg_dump -Fc');

for my $opts ([ '--exit-on-error' ], [ '--single-transaction' ])
{
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ 'pg_restore', '--clean', '--if-exists', @$opts, '-d', $node->connstr('postgres'),
		"$dir/db.dump" ], '>', \$stdout, '2>', \$stderr);
	ok($ok, "pg_restore --clean --if-exists @$opts succeeds") or diag($stderr);
	is($node->safe_psql('postgres', q{SELECT string_agg(relid::text || ' ' || key_prefix, ',' ORDER BY key_prefix)
	                                    FROM redis_sync.tables}),
		'other other:,plain plain:', "@$opts: the configuration is restored");
	$node->safe_psql('postgres', q{UPDATE plain SET v = 'after' WHERE id = 1});
	is($redis->cli('HGET', 'plain:1', 'v'), 'after', "@$opts: the restored table syncs");
}
done_testing();

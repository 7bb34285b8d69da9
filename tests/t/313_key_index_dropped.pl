# Review (keys and DDL): key_columns must match a primary key or unique
# index, but that was checked only by write_through()/invalidate(): a later
# DROP INDEX or ALTER TABLE ... DROP CONSTRAINT of that index was accepted,
# two rows could then share one Redis key, and the cache held whichever row
# was written (or read through) last: verify() reported a different value,
# and a DELETE of one row removed the key of the other.  Now such a drop
# unsyncs the table with a WARNING (its keys removed at commit), as the
# drop of a key column does; refusing it made pg_restore --clean fail
# (tests/t/351).  DROP INDEX CONCURRENTLY, which makes the index dead in
# transactions of its own, is refused before it starts.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('key_index', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE u (id int PRIMARY KEY, code text NOT NULL, v text);
CREATE UNIQUE INDEX u_code ON u (code);
SELECT redis_sync.write_through('u', key_prefix => 'u:', key_columns => '{code}', warm => false);
INSERT INTO u VALUES (1, 'x', 'one');
CREATE TABLE i (id int PRIMARY KEY, v text);
SELECT redis_sync.invalidate('i', key_prefix => 'i:');
INSERT INTO i VALUES (1, 'a');
CREATE TABLE p (id int NOT NULL, r text NOT NULL, v text,
                CONSTRAINT p_pk PRIMARY KEY (id, r)) PARTITION BY LIST (r);
CREATE TABLE p_a PARTITION OF p FOR VALUES IN ('a');
SELECT redis_sync.write_through('p', key_prefix => 'p:', warm => false);
});

# DROP INDEX CONCURRENTLY makes the index dead in transactions of its own
# before sql_drop fires: it is refused before it starts
my ($rc, $out, $err) = $node->psql('postgres', 'DROP INDEX CONCURRENTLY u_code');
isnt($rc, 0, 'DROP INDEX CONCURRENTLY of the index behind key_columns is refused');
like($err, qr/key_columns of table public\.u would no longer match/, 'the error names the table') or diag $err;
is($node->safe_psql('postgres',
		"SELECT indisvalid AND indisready AND indislive FROM pg_index WHERE indexrelid = 'u_code'::regclass"),
	't', 'and leaves the index valid and enforced');
# DROP INDEX: the table is no longer synced, its keys go at commit
($rc, $out, $err) = $node->psql('postgres', 'DROP INDEX u_code');
is($rc, 0, 'DROP INDEX of the unique index behind key_columns is done');
like($err, qr/WARNING:  table (public\.)?u is no longer synced: no unique index backs its key_columns/,
	'with a WARNING naming the table') or diag $err;
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.tables WHERE relid = 'u'::regclass"),
	'0', 'u is unsynced');
is($redis->cli('EXISTS', 'u:x'), '0', "u's keys are removed");
# the primary key of an invalidate table dropped, and of a partitioned table
($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE i DROP CONSTRAINT i_pkey');
is($rc, 0, 'DROP CONSTRAINT of the primary key behind key_columns is done');
like($err, qr/table (public\.)?i is no longer synced/, '... and unsyncs the invalidate table') or diag $err;
($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE p DROP CONSTRAINT p_pk');
like($err, qr/table (public\.)?p is no longer synced/, '... and the partitioned table') or diag $err;
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'redis_sync%'
                                    AND tgrelid IN ('u'::regclass, 'i'::regclass, 'p'::regclass, 'p_a'::regclass)}),
	'0', 'their triggers are gone');

# whatever happened above, the cache must not hold another row than the
# table: rows now sharing u's old key are not pushed
$node->psql('postgres', "INSERT INTO u VALUES (2, 'x', 'two')");
$node->psql('postgres', "INSERT INTO i VALUES (1, 'b')");
is($redis->cli('EXISTS', 'u:x', 'i:1'), '0', 'rows sharing a key are not cached');

# a replacement in one statement, and a new index made before the old one
# is dropped, keep the table synced
$node->safe_psql('postgres', q{
CREATE TABLE k (id int PRIMARY KEY, code text NOT NULL, v text);
CREATE UNIQUE INDEX k_code ON k (code);
SELECT redis_sync.write_through('k', key_prefix => 'k:', key_columns => '{code}', warm => false);
CREATE TABLE k2 (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('k2', key_prefix => 'k2:', warm => false);
});
$node->safe_psql('postgres', 'ALTER TABLE k2 DROP CONSTRAINT k2_pkey, ADD PRIMARY KEY (id)');
$node->safe_psql('postgres', 'CREATE UNIQUE INDEX k_code2 ON k (code); DROP INDEX k_code');
# an index that is not the key's goes as usual
$node->safe_psql('postgres', 'CREATE INDEX k_v ON k (v); DROP INDEX k_v');
$node->safe_psql('postgres', 'CREATE INDEX k_v2 ON k (v)');
$node->safe_psql('postgres', 'DROP INDEX CONCURRENTLY k_v2');
$node->safe_psql('postgres', 'CREATE UNIQUE INDEX k_code3 ON k (code)');
$node->safe_psql('postgres', 'DROP INDEX CONCURRENTLY k_code3');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.tables WHERE relid IN ('k'::regclass, 'k2'::regclass)"),
	'2', 'k and k2 stay synced');
# a table owner that is no superuser drops its indexes concurrently as usual
$node->safe_psql('postgres', q{
CREATE ROLE plain LOGIN;
GRANT CREATE ON SCHEMA public TO plain;
SET ROLE plain;
CREATE TABLE plain_t (id int PRIMARY KEY, v text);
CREATE INDEX plain_v ON plain_t (v);
});
($rc, $out, $err) = $node->psql('postgres', 'DROP INDEX CONCURRENTLY plain_v',
	extra_params => [ '-U', 'plain' ]);
is($rc, 0, 'a plain owner drops an index concurrently') or diag $err;
# dropping the table drops its indexes too
$node->safe_psql('postgres', 'DROP TABLE k');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.tables WHERE key_prefix = 'k:'"),
   '0', 'a dropped table is unsynced');

$node->stop;
$redis->stop;
done_testing();

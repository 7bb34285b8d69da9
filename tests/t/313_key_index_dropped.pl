# Review (keys and DDL): key_columns must match a primary key or unique
# index, but that was checked only by write_through()/invalidate(): a later
# DROP INDEX or ALTER TABLE ... DROP CONSTRAINT of that index was accepted,
# two rows could then share one Redis key, and the cache held whichever row
# was written (or read through) last: verify() reported a different value,
# and a DELETE of one row removed the key of the other.
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

# the unique index behind key_columns dropped
my ($rc, $out, $err) = $node->psql('postgres', 'DROP INDEX u_code');
isnt($rc, 0, 'DROP INDEX of the unique index behind key_columns is refused');
like($err, qr/key_columns of table public\.u would no longer match/, 'the error names the table') or diag $err;
# DROP INDEX CONCURRENTLY makes the index dead in transactions of its own
# before sql_drop fires: it must be refused before it starts
($rc, $out, $err) = $node->psql('postgres', 'DROP INDEX CONCURRENTLY u_code');
isnt($rc, 0, 'DROP INDEX CONCURRENTLY of that index is refused');
is($node->safe_psql('postgres',
		"SELECT indisvalid AND indisready AND indislive FROM pg_index WHERE indexrelid = 'u_code'::regclass"),
	't', 'and leaves the index valid and enforced');
# the primary key of an invalidate table dropped
($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE i DROP CONSTRAINT i_pkey');
isnt($rc, 0, 'DROP CONSTRAINT of the primary key behind key_columns is refused');
($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE p DROP CONSTRAINT p_pk');
isnt($rc, 0, 'and of a partitioned table');

# whatever happened above, the cache must not hold another row than the table
$node->psql('postgres', "INSERT INTO u VALUES (2, 'x', 'two')");
my $bad = $node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('u')");
is($bad, '0', 'verify(u) clean');
$node->psql('postgres', "INSERT INTO i VALUES (1, 'b')");
$node->safe_psql('postgres', "SELECT * FROM redis_sync.get(NULL::i, '1')");
$node->safe_psql('postgres', "UPDATE i SET v = 'c' WHERE v = 'a'");
my $got = $node->safe_psql('postgres', "SELECT string_agg(v, ',' ORDER BY v) FROM redis_sync.get(NULL::i, '1')");
is($got, $node->safe_psql('postgres', 'SELECT string_agg(v, \',\' ORDER BY v) FROM i WHERE id = 1'),
   'get() of the invalidate table returns the table row');

# a replacement in one statement, and a new index made before the old one
# is dropped, are fine
$node->safe_psql('postgres', 'ALTER TABLE i DROP CONSTRAINT i_pkey, ADD PRIMARY KEY (id)');
$node->safe_psql('postgres', 'CREATE UNIQUE INDEX u_code2 ON u (code); DROP INDEX u_code');
# an index that is not the key's goes as usual
$node->safe_psql('postgres', 'CREATE INDEX u_v ON u (v); DROP INDEX u_v');
$node->safe_psql('postgres', 'CREATE INDEX u_v2 ON u (v)');
$node->safe_psql('postgres', 'DROP INDEX CONCURRENTLY u_v2');
$node->safe_psql('postgres', 'CREATE UNIQUE INDEX u_code3 ON u (code)');
$node->safe_psql('postgres', 'DROP INDEX CONCURRENTLY u_code3');
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
$node->safe_psql('postgres', 'DROP TABLE p');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.tables WHERE key_prefix = 'p:'"),
   '0', 'a dropped table is unsynced');

$node->stop;
$redis->stop;
done_testing();

# An unlogged table loses its rows in a crash without any trigger firing
# (recovery resets it to empty): a write-through or invalidate table that
# is unlogged kept every key of its rows in Redis after a crash, stale for
# good (shown first, on a table made unlogged behind the extension's back).
# write_through()/invalidate() refuse an unlogged table or partition, and
# so do SET UNLOGGED, CREATE UNLOGGED TABLE ... PARTITION OF and ATTACH
# PARTITION of an unlogged table; write_behind() may use one.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('unlogged', redis => $redis);
sub sql { return $node->safe_psql('postgres', $_[0]); }
sub fails
{
	my ($q, $re, $name) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $q);
	isnt($ret, 0, "$name: refused");
	like($err, $re, "$name: says why");
}

# the staleness the refusal prevents: a table synced while logged, then
# made unlogged with the capture bypassed (the event trigger disabled by a
# superuser), crashes
sql(q{
CREATE TABLE gone (id int PRIMARY KEY, v text);
INSERT INTO gone SELECT g, 'v' || g FROM generate_series(1, 5) g;
SELECT redis_sync.write_through('gone', key_prefix => 'gone:');
ALTER EVENT TRIGGER redis_sync_ddl_end DISABLE;
ALTER TABLE gone SET UNLOGGED;
ALTER EVENT TRIGGER redis_sync_ddl_end ENABLE;
CHECKPOINT;
});
$node->stop('immediate');
$node->start;
is(sql('SELECT count(*) FROM gone'), '0', 'the crash emptied the unlogged table');
is($redis->cli('HGET', 'gone:3', 'v'), 'v3', 'and Redis kept its keys: what the refusals prevent');
is(sql(q{SELECT count(*) FROM redis_sync.verify('gone') WHERE problem = 'extra in cache'}), '5', 'verify() shows the stale keys');

# refusals
sql(q{
CREATE UNLOGGED TABLE ul (id int PRIMARY KEY, v text);
CREATE TABLE pl (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE UNLOGGED TABLE pl1 PARTITION OF pl FOR VALUES FROM (0) TO (100);
CREATE TABLE lt (id int PRIMARY KEY, v text);
CREATE TABLE lp (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE lp1 PARTITION OF lp FOR VALUES FROM (0) TO (100);
CREATE UNLOGGED TABLE lp_stray (id int PRIMARY KEY, v text);
});
fails(q{SELECT redis_sync.write_through('ul', key_prefix => 'ul:')}, qr/unlogged table ul cannot be synced/, 'write_through() of an unlogged table');
fails(q{SELECT redis_sync.invalidate('ul', key_prefix => 'ul:')}, qr/unlogged table ul cannot be synced/, 'invalidate() of an unlogged table');
fails(q{SELECT redis_sync.write_through('pl', key_prefix => 'pl:')}, qr/unlogged table pl1 cannot be synced.*\n.*partition of pl/, 'write_through() of a table with an unlogged partition');
sql(q{SELECT redis_sync.write_through('lt', key_prefix => 'lt:')});
sql(q{SELECT redis_sync.write_through('lp', key_prefix => 'lp:')});
fails(q{ALTER TABLE lt SET UNLOGGED}, qr/table (public\.)?lt cannot be unlogged while it is synced write-through/, 'SET UNLOGGED of a synced table');
fails(q{ALTER TABLE lp1 SET UNLOGGED}, qr/table (public\.)?lp1 cannot be unlogged while its table (public\.)?lp is synced write-through/, 'SET UNLOGGED of a partition');
fails(q{CREATE UNLOGGED TABLE lp2 PARTITION OF lp FOR VALUES FROM (100) TO (200)}, qr/unlogged table (public\.)?lp2 cannot be a partition of (public\.)?lp while it is synced write-through/, 'an unlogged partition created');
fails(q{ALTER TABLE lp ATTACH PARTITION lp_stray FOR VALUES FROM (200) TO (300)}, qr/unlogged table (public\.)?lp_stray cannot be a partition of (public\.)?lp while it is synced write-through/, 'an unlogged partition attached');
is(sql(q{SELECT relpersistence FROM pg_class WHERE oid = 'lt'::regclass}), 'p', 'lt stays logged');

# what stays allowed: write-behind on an unlogged table, SET LOGGED, other
# ALTER TABLEs, and SET UNLOGGED once unsynced
sql(q{SELECT redis_sync.write_behind('ul', key_prefix => 'ul:')});
is(sql(q{SELECT policy FROM redis_sync.tables WHERE relid = 'ul'::regclass}), 'write_behind', 'write_behind() of an unlogged table');
sql(q{ALTER TABLE lt ADD COLUMN w int; ALTER TABLE lt SET LOGGED});
sql(q{SELECT redis_sync.unsync('lt'); ALTER TABLE lt SET UNLOGGED});
is(sql(q{SELECT relpersistence FROM pg_class WHERE oid = 'lt'::regclass}), 'u', 'unsynced: SET UNLOGGED allowed');

$node->stop;
done_testing();

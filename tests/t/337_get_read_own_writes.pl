# get() of a cached row that the calling transaction has changed or deleted.
#
# Found by the adversarial review (area: read-through): on a hit, get()
# returned the cached row, the committed one, although the caller's own
# transaction had updated or deleted the row: a value older than the
# caller's own write (and, for a deleted row, a row the caller's SELECT no
# longer sees).  The README promises that get() returns what the caller's
# SELECT returns (row-level security) and that a cache is never stale.
#
# Expected: in a transaction that has written the table, get() returns the
# row as the transaction sees it, and caches nothing; after the transaction,
# the cache equals the table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('get_ryw', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE rt (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('rt', key_prefix => 'rt:', warm => false);
CREATE TABLE ri (id int PRIMARY KEY, v text);
SELECT redis_sync.invalidate('ri', key_prefix => 'ri:');
INSERT INTO rt VALUES (1, 'committed'), (2, 'committed');
INSERT INTO ri VALUES (1, 'committed');
SELECT redis_sync.get(NULL::ri, '1');
});
is($redis->cli('HGET', 'rt:1', 'v'), 'committed', 'rt:1 cached');
is($redis->cli('HGET', 'ri:1', 'v'), 'committed', 'ri:1 cached by get()');

is($node->safe_psql('postgres', q{
BEGIN;
UPDATE rt SET v = 'mine' WHERE id = 1;
SELECT (redis_sync.get(NULL::rt, '1')).v;
ROLLBACK;
}), 'mine', 'write-through: get() sees the transaction\'s own UPDATE');

is($node->safe_psql('postgres', q{
BEGIN;
DELETE FROM rt WHERE id = 2;
SELECT coalesce((redis_sync.get(NULL::rt, '2')).v, 'NULL');
ROLLBACK;
}), 'NULL', 'write-through: get() of a row the transaction deleted is NULL');

is($node->safe_psql('postgres', q{
BEGIN;
UPDATE ri SET v = 'mine' WHERE id = 1;
SELECT (redis_sync.get(NULL::ri, '1')).v;
COMMIT;
}), 'mine', 'invalidate: get() sees the transaction\'s own UPDATE');

is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('rt')}), '0', 'verify(rt) clean');
is($node->safe_psql('postgres', q{SELECT (redis_sync.get(NULL::ri, '1')).v}), 'mine',
	'after commit get() returns the committed row');
is($redis->cli('HGET', 'ri:1', 'v'), 'mine', 'and caches it');

done_testing();

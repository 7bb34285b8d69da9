# A logical-replication subscriber keeps its Redis in step when its synced
# tables are synced with replica => true.  The apply worker runs with
# session_replication_role = replica, which skips ordinary triggers: without
# the option the subscriber's Redis silently misses every replicated change
# (documented); with it the capture triggers are ENABLE ALWAYS and the apply
# worker pushes at its commits like any session, fenced as usual.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();

# the publisher does not need redis_sync at all
my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->start;
my $sub = RedisSync::Test::new_node('subscriber', redis => $redis);

for my $node ($pub, $sub)
{
	$node->safe_psql('postgres', q{
CREATE TABLE prices (id int PRIMARY KEY, sku text NOT NULL, price numeric);
CREATE TABLE plain (id int PRIMARY KEY, v text);
});
}
$pub->safe_psql('postgres', q{
INSERT INTO prices SELECT g, 'sku' || g, g FROM generate_series(1, 100) g;
INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 10) g;
CREATE PUBLICATION pub FOR TABLE prices, plain;
});

# prices: replica => true (and the warm fills what the initial copy brings);
# plain: the default, so replicated changes do not reach Redis
$sub->safe_psql('postgres', q{
SELECT redis_sync.write_through('prices', key_prefix => 'p:', replica => true);
SELECT redis_sync.write_through('plain', key_prefix => 'x:');
});
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION sub CONNECTION '$connstr' PUBLICATION pub");
$pub->wait_for_catchup('sub');
$sub->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')})
  or die 'initial table sync did not finish';

my %cmp = (
	table       => 'prices',
	prefix      => 'p:',
	key_columns => ['id'],
	columns     => [ 'id', 'sku', 'price' ]);

# the initial copy (COPY in a table-sync worker) fires the ALWAYS triggers too
RedisSync::Compare::cache_matches_table($sub, $redis, %cmp,
	name => 'initial copy: subscriber Redis == subscriber table');

$pub->safe_psql('postgres', q{
UPDATE prices SET price = price * 2 WHERE id % 3 = 0;
DELETE FROM prices WHERE id > 90;
INSERT INTO prices VALUES (500, 'new', 1);
UPDATE plain SET v = 'changed' WHERE id = 1;
INSERT INTO plain VALUES (11, 'eleven');
});
$pub->wait_for_catchup('sub');
is($sub->safe_psql('postgres', 'SELECT price FROM prices WHERE id = 3'), '6', 'change replicated');
RedisSync::Compare::cache_matches_table($sub, $redis, %cmp,
	name => 'replica => true: replicated updates, deletes and inserts reach Redis');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('prices')}), '0',
	'verify() clean on the subscriber');

# without replica => true: documented, replicated changes are not pushed
is($redis->cli('EXISTS', 'x:11'), '0', 'default: a replicated INSERT is not pushed');
is( $sub->safe_psql('postgres',
		q{SELECT count(*) FROM redis_sync.verify('plain') WHERE problem = 'missing in cache'}),
	'11', 'default: verify() shows every replicated row (initial copy included) missing from Redis');
# a local change on the subscriber is pushed either way
$sub->safe_psql('postgres', q{UPDATE plain SET v = 'local' WHERE id = 2});
is($redis->cli('HGET', 'x:2', 'v'), 'local', 'default: local changes are pushed');

# replicated TRUNCATE empties the cache of a replica => true table
$pub->safe_psql('postgres', 'TRUNCATE prices');
$pub->wait_for_catchup('sub');
RedisSync::Compare::cache_matches_table($sub, $redis, %cmp,
	name => 'replicated TRUNCATE purges the cached keys');

$sub->stop;
$pub->stop;
done_testing();

# on_missing => 'delete': a dirty member whose key is gone deletes its row.
# When that DELETE fails for a permanent reason (another table's foreign key
# still references the row), README's rule applies: that member is a dead
# letter with the reason, the batch's other members are applied, and the
# dirty and processing sets drain.  Before, the set-based DELETE had no
# row-by-row fallback and the whole batch failed and was retried forever.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbdelmissing', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE p (id int PRIMARY KEY, v text);
INSERT INTO p VALUES (1, 'one'), (2, 'two'), (3, 'three');
CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES p);
INSERT INTO child VALUES (1, 2);
SELECT redis_sync.write_behind('p', key_prefix => 'p:', flush_interval => '1 h', on_missing => 'delete');
});

$redis->cli('HSET', 'p:1', 'v', 'uno');   # an update
$redis->cli('SADD', 'p:dirty', 1, 2, 3);  # 2 and 3: no key, rows deleted; 2 is referenced
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'p', dirty => 'p:dirty', timeout => 20);
ok(defined $secs, 'the dirty set and processing set drain (the batch is not retried forever)');
is(sq("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM p"), '1=uno,2=two',
	'the update and the possible delete are applied; the referenced row stays');
is(sq("SELECT string_agg(member || ' ' || sqlstate, ',' ORDER BY member) FROM redis_sync.dead_letters"),
	'2 23503', 'the delete refused by the foreign key is a dead letter');
note(sq(q{SELECT row_to_json(s) FROM redis_sync.stats s WHERE "table" = 'p'::regclass}));
is(RedisSync::WB::wb_stat($node, 'p', 'applied'), '2', 'stats: two rows applied');

$node->stop;
done_testing();

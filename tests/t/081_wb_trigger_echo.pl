# Echo suppression is exact: a drain suppresses only the echo of the rows it
# writes into its own table under the drained keys' prefix.
#
# The storefront: product(id, name NOT NULL, price, view_count) is
# write-through on {id,name,price} under product: and write-behind on
# view_count (string format, counters) under viewcount:, and a trigger on
# product keeps category_views (write-through under cv:) up to date.  Pages
# do INCR viewcount:<id> + SADD dirty-products <id>.  Right after the drain:
#   - product has every view (name NOT NULL outside `columns` blocks nothing);
#   - the trigger's write-through table is in Redis (it was not suppressed);
#   - viewcount:<id> still holds the application's value and product:<id>
#     its catalogue fields (nothing echoed or erased).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbecho', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE category_views (category text PRIMARY KEY, views bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('category_views', key_prefix => 'cv:');
INSERT INTO category_views VALUES ('lamps', 0), ('desks', 0);
CREATE TABLE product (id int PRIMARY KEY, name text NOT NULL, category text NOT NULL,
                      price numeric(10,2), view_count bigint NOT NULL DEFAULT 0);
CREATE FUNCTION product_views() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE public.category_views SET views = views + NEW.view_count - OLD.view_count
   WHERE category = NEW.category;
  RETURN NULL;
END $$;
CREATE TRIGGER product_views AFTER UPDATE OF view_count ON product
  FOR EACH ROW EXECUTE FUNCTION product_views();
SELECT redis_sync.write_through('product', key_prefix => 'product:', columns => '{id,name,category,price}');
INSERT INTO product SELECT g, 'p' || g, CASE WHEN g % 2 = 0 THEN 'lamps' ELSE 'desks' END, g, 0
  FROM generate_series(1, 20) g;
SELECT redis_sync.write_behind('product', key_prefix => 'viewcount:', dirty_set => 'dirty-products',
                               columns => '{view_count}', format => 'string', counters => '{view_count}',
                               flush_interval => '1 h');
});
is($redis->cli('HGET', 'product:3', 'name'), 'p3', 'catalogue pushed');
is($redis->cli('HGET', 'cv:lamps', 'views'), '0', 'category_views pushed');

# the pages: id gets id views
my $dir = "$PostgreSQL::Test::Utils::tmp_check/wbecho";
mkdir $dir or die "$dir: $!";
my @cmds;
for my $id (1 .. 20)
{
	push @cmds, [ 'INCR', "viewcount:$id" ], [ 'SADD', 'dirty-products', $id ] for 1 .. $id;
}
RedisSync::WB::write_resp("$dir/views.resp", @cmds);
RedisSync::WB::pipe_run($redis, "$dir/views.resp", scalar @cmds);
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis,
	table => 'product', dirty => 'dirty-products', timeout => 60);
ok(defined $secs, 'drained');
RedisSync::WB::no_dead_letters($node);
is($node->safe_psql('postgres', 'SELECT sum(view_count) FROM product'), 210,
	'every view reached the table (name NOT NULL outside columns blocked nothing)');
is($node->safe_psql('postgres', "SELECT string_agg(category || '=' || views, ',' ORDER BY category) FROM category_views"),
	'desks=100,lamps=110', 'the trigger updated category_views');

# right after the drain, without waiting for anything
is($redis->cli('HGET', 'cv:lamps', 'views') . ',' . $redis->cli('HGET', 'cv:desks', 'views'), '110,100',
	"the trigger's write-through table is in Redis right after the drain (not suppressed)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), 0, '... pushed directly, nothing queued');
my $vc = RedisSync::WB::hash_field_dump($redis, 'viewcount:', undef, type => 'string');
RedisSync::WB::maps_equal($vc, { map { $_ => $_ } 1 .. 20 }, 'viewcount:<id> keeps the application value');
is($redis->cli('HGET', 'product:7', 'name') . ',' . $redis->cli('HGET', 'product:7', 'price'), 'p7,7.00',
	'product:<id> keeps its catalogue fields');
is($redis->cli('HEXISTS', 'product:7', 'view_count'), 0, '... and gets no write-behind column');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('category_views')"), 0,
	'verify(category_views) clean');

# the same prefix for both policies (over other columns: one both write is
# refused, sql/purge_types): the drain's own rows are not echoed over the
# keys they came from (a newer Redis value is never overwritten)
$node->safe_psql('postgres', q{
CREATE TABLE likes (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, label text);
SELECT redis_sync.write_through('likes', key_prefix => 'lk:', columns => '{id,label}');
SELECT redis_sync.write_behind('likes', key_prefix => 'lk:', columns => '{n}', counters => '{n}',
                               flush_interval => '1 h');
INSERT INTO likes VALUES (1, 0, 'x');
});
my $captured = $node->safe_psql('postgres',
	q{SELECT captured FROM redis_sync.stats WHERE "table" = 'likes'::regclass AND policy = 'write_through'});
$redis->cli('HINCRBY', 'lk:1', 'n', 3);
$redis->cli('SADD', 'lk:dirty', 1);
RedisSync::WB::flush_until_clean($node, $redis, table => 'likes', dirty => 'lk:dirty', timeout => 60);
is($node->safe_psql('postgres', 'SELECT n FROM likes'), 3, 'same prefix: drained');
is($node->safe_psql('postgres',
	q{SELECT captured FROM redis_sync.stats WHERE "table" = 'likes'::regclass AND policy = 'write_through'}),
	$captured, '... and the drain write was not captured (no echo)');
is($redis->cli('HGET', 'lk:1', 'label'), 'x', '... the hash keeps the write-through fields');

$node->stop;
done_testing();

# The abort of a transaction of more than 1,000 keys keeps no committed
# images: it deletes what its push wrote, and the worker pushes the
# committed rows from the in-flight markers.  It deleted whole keys: a
# field the application keeps in a row's hash (a push writes only its own
# fields, README) was lost, and so were the write-behind fields of a hash
# shared with that policy, written in Redis and not yet drained into the
# table, which nothing could bring back.  Only the table's fields go now
# (rs_image_drop_row).
#
# The transaction fails at commit, after its push, on a serialization
# failure (a write skew: PostgreSQL checks for it after the pre-commit
# callbacks).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('abort_keeps_fields', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '500ms'");
sub sq { return $node->safe_psql('postgres', $_[0]); }

my $rows = 1100;
sq(qq{
CREATE TABLE sh (id int PRIMARY KEY, name text, views int NOT NULL DEFAULT 0);
INSERT INTO sh SELECT g, 'n' || g, 0 FROM generate_series(1, $rows) g;
SELECT redis_sync.write_through('sh', key_prefix => 'sh:', columns => '{id,name}', warm => false);
SELECT redis_sync.write_behind('sh', key_prefix => 'sh:', columns => '{views}', flush_interval => '1 h');
SELECT redis_sync.warm('sh');
CREATE TABLE other (id int PRIMARY KEY, v int);
INSERT INTO other VALUES (1, 1);
});
is($redis->cli('HGET', 'sh:5', 'name'), 'n5', 'sh cached');
# a write-behind field not drained yet, and a field of the application's
$redis->cli('HSET', 'sh:5', 'views', '42');
$redis->cli('HSET', 'sh:6', 'app_note', 'precious');

# rows of the UPDATE keeping the value it set
sub rolled_back
{
	return $redis->cli('EVAL', q{
local n = 0
for id = 1, tonumber(ARGV[1]) do
  local v = redis.call('HGET', 'sh:' .. id, 'name')
  if v and string.sub(v, -1) == 'x' then n = n + 1 end
end
return n}, '0', $rows);
}

my $s = RedisSync::Test::session($node);
my $r = RedisSync::Test::fail_at_commit_after_push($node, $s, q{UPDATE sh SET name = name || 'x'},
	q{SELECT name FROM sh WHERE id = 1}, 'other');
like($r->{err}, qr/could not serialize access/, "the UPDATE of $rows keys fails at commit, after its push");
is(rolled_back(), 0, 'no key keeps the rolled-back value');
is($redis->cli('HGET', 'sh:5', 'views'), '42', 'the write-behind field not yet drained is still there');
is($redis->cli('HGET', 'sh:6', 'app_note'), 'precious', "the application's field is still there");

# the worker pushes the committed rows from the markers
ok(defined RedisSync::Compare::wait_for(
		sub { $redis->cli('HGET', 'sh:5', 'name') eq 'n5' && $redis->cli('HGET', "sh:$rows", 'name') eq "n$rows" },
		60, 0.2),
	'the worker restores the committed rows');
is($redis->cli('HGET', 'sh:5', 'views'), '42', 'sh:5 keeps its write-behind field');
is($redis->cli('HGET', 'sh:6', 'app_note'), 'precious', "sh:6 keeps the application's field");
is($redis->cli('HGET', 'sh:6', 'name'), 'n6', 'and its committed row');

$s->quit;
$node->stop;
$redis->stop;
done_testing();

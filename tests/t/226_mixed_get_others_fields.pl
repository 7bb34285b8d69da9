# get() of a table write-through and write-behind over one hash, when the
# hash holds only write-behind fields: a row the write-behind drain created
# (the drain's rows are not pushed back over the keys they came from), or a
# truncated row whose hash kept its write-behind fields (TRUNCATE op 'F').
# Such a hash holds none of the write-through columns: it is no cached row.
#
# Found by the wave 2l review: get() took it for a hit and returned a row
# of NULLs -- the key column included -- for a row the table has with other
# values (a column default), and for a truncated row the table no longer
# has.  Expected: the row as the table has it (NULL when it has none), and
# the write-behind fields untouched (a populate's fenced delete of a row the
# table lacks would remove them).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('mixed_get', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE mx (id int PRIMARY KEY, v text DEFAULT 'hello', n int NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('mx', key_prefix => 'mx:', columns => '{v}', warm => false);
SELECT redis_sync.write_behind('mx', key_prefix => 'mx:', dirty_set => 'mx-dirty',
                               columns => '{n}', counters => '{n}', flush_interval => '1 h');
});

# a row the drain created from the application's counter
$redis->cli('HINCRBY', 'mx:7', 'n', '5');
$redis->cli('SADD', 'mx-dirty', '7');
is($node->safe_psql('postgres', q{SELECT redis_sync.flush('mx')}), '1', 'the drain inserted the row');
is($node->safe_psql('postgres', q{SELECT id || ' ' || v || ' ' || n FROM mx}), '7 hello 5',
	'the table has it, with the column default');
is($node->safe_psql('postgres', q{SELECT (g).id || ' ' || (g).v FROM (SELECT redis_sync.get(NULL::mx, '7') g) s}),
	'7 hello', 'get() returns the row the table has, not a row of NULLs');
is($redis->cli('HGET', 'mx:7', 'n'), '5', 'the write-behind field is untouched');

# a truncated row whose hash kept an undrained write-behind field
$node->safe_psql('postgres', q{INSERT INTO mx VALUES (8, 'eight', 0)});
$redis->cli('HINCRBY', 'mx:8', 'n', '3');
$redis->cli('SADD', 'mx-dirty', '8');
$node->safe_psql('postgres', q{TRUNCATE mx});
is($redis->cli('HGET', 'mx:8', 'v'), '', 'TRUNCATE removed the write-through field');
is($redis->cli('HGET', 'mx:8', 'n'), '3', '... and kept the write-behind one');
is($node->safe_psql('postgres', q{SELECT coalesce(redis_sync.get(NULL::mx, '8')::text, 'NULL')}), 'NULL',
	'get() of the truncated row returns NULL, not a row of NULLs');
is($redis->cli('HGET', 'mx:8', 'n'), '3', 'the undrained write-behind field is still there');
is($node->safe_psql('postgres', q{SELECT redis_sync.flush('mx')}), '1', 'the drain writes it');
is($node->safe_psql('postgres', q{SELECT n FROM mx WHERE id = 8}), '3', 'no increment lost');

done_testing();

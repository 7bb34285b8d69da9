# write_behind() refuses a table whose key columns carry a DEFERRABLE
# unique constraint (TAP 323): the drain's INSERT ... ON CONFLICT on the key
# columns fails with "ON CONFLICT does not support deferrable unique
# constraints/exclusion constraints as arbiters".  The same constraint
# added after write_behind() went through unchecked (and with it the old
# primary key may even be dropped: the key-index guard counts a deferrable
# index as the key's index): every new row was then a dead letter.  Either
# the DDL is refused with a clear error, or the drain still inserts rows.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbdefadd', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{CREATE TABLE dk (id int PRIMARY KEY, v text); INSERT INTO dk VALUES (1, 'a');
SELECT redis_sync.write_behind('dk', key_prefix => 'dk:', flush_interval => '1 h');});

for my $ddl ('ALTER TABLE dk ADD CONSTRAINT dk_id_def UNIQUE (id) DEFERRABLE',
	'ALTER TABLE dk DROP CONSTRAINT dk_pkey')
{
	my ($ret, $out, $err) = $node->psql('postgres', $ddl);
	if ($ret != 0)
	{
		like($err, qr/deferrable|key_columns/i, "refused with a reason: $ddl");
		last;
	}
	pass("accepted: $ddl");
}

$redis->cli('HSET', 'dk:1', 'v', 'b');
$redis->cli('HSET', 'dk:2', 'v', 'new');
$redis->cli('SADD', 'dk:dirty', 1, 2);
RedisSync::WB::flush_until_clean($node, $redis, table => 'dk', dirty => 'dk:dirty', timeout => 20);
is(sq("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM dk"), '1=b,2=new',
	'the update and the new row are drained');
is(sq(q{SELECT string_agg(member || ': ' || error, ' / ') FROM redis_sync.dead_letters}), '',
	'no dead letters');
$node->stop;
done_testing();

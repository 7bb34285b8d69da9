# A write-behind table whose key is a DEFERRABLE primary key: the drain's
# INSERT ... ON CONFLICT cannot use it as arbiter ("ON CONFLICT does not
# support deferrable unique constraints/exclusion constraints as
# arbiters"), so no new row could ever be drained.  Either write_behind()
# refuses the table with a clear error, or the drain inserts the row.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbdefkey', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{CREATE TABLE dk (id int PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE, v text); INSERT INTO dk VALUES (1, 'a');});
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT redis_sync.write_behind('dk', key_prefix => 'dk:', flush_interval => '1 h')});
if ($ret != 0)
{
	like($err, qr/deferrable/i, 'write_behind() refuses the deferrable key and says why');
}
else
{
	$redis->cli('HSET', 'dk:1', 'v', 'b');
	$redis->cli('HSET', 'dk:2', 'v', 'new');
	$redis->cli('SADD', 'dk:dirty', 1, 2);
	RedisSync::WB::flush_until_clean($node, $redis, table => 'dk', dirty => 'dk:dirty', timeout => 20);
	is(sq("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM dk"), '1=b,2=new',
		'accepted by write_behind(): the update and the new row are drained');
	is(sq(q{SELECT string_agg(member || ': ' || error, ' / ') FROM redis_sync.dead_letters}), '',
		'no dead letters');
}
$node->stop;
done_testing();

# Write-behind of a table whose key is a GENERATED ALWAYS identity column:
# an application writing a new row's hash (its key chosen by the
# application, or taken from a sequence) must either get it inserted, or
# write_behind() must refuse the table; every new row being a dead letter
# ("cannot insert a non-DEFAULT value into column") is neither.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbident', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{CREATE TABLE gi (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text); INSERT INTO gi (v) VALUES ('a');});
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT redis_sync.write_behind('gi', key_prefix => 'gi:', flush_interval => '1 h')});
if ($ret != 0)
{
	like($err, qr/identity|generated/i, 'write_behind() refuses the identity key and says why');
}
else
{
	$redis->cli('HSET', 'gi:1', 'v', 'b');
	$redis->cli('HSET', 'gi:5', 'v', 'new');
	$redis->cli('SADD', 'gi:dirty', 1, 5);
	RedisSync::WB::flush_until_clean($node, $redis, table => 'gi', dirty => 'gi:dirty', timeout => 20);
	is(sq("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM gi"), '1=b,5=new',
		'accepted by write_behind(): the update and the new row are drained');
	is(sq(q{SELECT string_agg(member || ': ' || error, ' / ') FROM redis_sync.dead_letters}), '',
		'no dead letters');
}

# hset()/hincrby() of a column the drain never writes (stored generated, or a
# GENERATED ALWAYS identity column that is not the key) must be refused, not
# put a value in Redis that never reaches the table
sq(q{CREATE TABLE gc (id int PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) STORED,
                      seq int GENERATED ALWAYS AS IDENTITY);
     INSERT INTO gc (id, n) VALUES (1, 5);
     SELECT redis_sync.write_behind('gc', key_prefix => 'gc:', flush_interval => '1 h');});
for my $call ("redis_sync.hset('gc', '1', 'twice', '99')", "redis_sync.hincrby('gc', '1', 'seq', 1)")
{
	my ($r, $o, $e) = $node->psql('postgres', "SELECT $call");
	isnt($r, 0, "$call is refused");
	like($e, qr/generated|identity/i, '... saying why');
}
is($redis->cli('HGET', 'gc:1', 'twice') . '|' . $redis->cli('HGET', 'gc:1', 'seq'), '|', 'nothing written to Redis');
is(sq("SELECT redis_sync.hincrby('gc', '1', 'n', 1)"), '6', 'a writable column still works');

$node->stop;
done_testing();

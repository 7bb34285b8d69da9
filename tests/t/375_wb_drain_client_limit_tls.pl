# tests/t/374_wb_drain_client_limit over TLS: under a Redis limit on a
# client's output buffer, the write-behind drain reads its batches in pages,
# and a value larger than the limit goes to the dead letters.  A Redis that
# closes a TLS client sends close_notify, so the failure says "The server
# closed the TLS connection.": the drain took only the plain TCP wording for
# Redis closing the connection, so over TLS such a value held its table for
# good (review helper-103).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::TLS;
use Test::More;

my $pki   = RedisSync::TLS::make_pki();
my $redis = RedisSync::TLS::start_tls_redis($pki);
my $node  = RedisSync::Test::new_node('wbtls', redis_url => $redis->url,
	extra_conf => RedisSync::TLS::tls_conf($pki, verify => 'full'));

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE w (id int PRIMARY KEY, payload text NOT NULL);
SELECT redis_sync.write_behind('w', key_prefix => 'w:', flush_interval => '100 ms');
});
is($redis->cli('CONFIG', 'SET', 'client-output-buffer-limit', 'normal 1mb 1mb 0'), 'OK',
	'client-output-buffer-limit normal 1mb 1mb 0');

my $drained = sub {
	my ($sql, $want) = @_;
	return RedisSync::Compare::wait_for(sub { sq($sql) eq $want }, 90, 0.2);
};

# 10,000 hashes of 1 kB: 10 MB of replies, read in pages
$redis->cli('EVAL', q{
for i = 1, 10000 do
  redis.call('HSET', 'w:' .. i, 'payload', string.rep('a', 1000))
  redis.call('SADD', 'w:dirty', i)
end
return 'OK'}, 0);
ok(defined $drained->(q{SELECT count(*) FROM w WHERE length(payload) = 1000}, '10000'),
	'over TLS, under the limit, the drain writes all 10,000 rows');

# a value of 1.2 MB among 2,000 of 100 bytes
$redis->cli('EVAL', q{
for i = 1, 2000 do
  local size = 100
  if i == 777 then size = 1200000 end
  redis.call('HSET', 'w:' .. i, 'payload', string.rep('b', size))
  redis.call('SADD', 'w:dirty', i)
end
return 'OK'}, 0);
ok( defined $drained->(
		q{SELECT count(*) FROM w WHERE length(payload) = 100}
		  . q{ AND (SELECT count(*) FROM redis_sync.dead_letters) = 1}, '1999'),
	'over TLS, a value of 1.2 MB does not hold the table: the other 1,999 rows are written');
like(sq(q{SELECT member || ': ' || error FROM redis_sync.dead_letters}),
	qr/^777: .*closed the connection at each of two reads of the key/,
	'... and the large one is a dead letter that says why');

$node->stop;
done_testing();

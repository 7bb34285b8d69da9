# A large transaction's push under a Redis that limits a client's output
# buffer (client-output-buffer-limit normal).  A push streams its chunks
# while it encodes them (redis_stream.c); their replies (a QUEUED per
# command of the MULTI/EXEC chunks, about 13 bytes a row) were read only at
# the exec, so Redis held them meanwhile, and dropped the connection once
# they passed the limit: a 600,000-row UPDATE under a 1 MB limit over TCP
# (7.8 MB of replies; the kernel's socket buffers held a few MB of them).
# A 'strict' table's transaction of that size then failed every time, and
# an 'eventual' one went through the outbox.  The stream now reads the
# replies that have come as it sends.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $ROWS  = 600_000;
# the limit from the start: the worker asks Redis once per connection
my $redis = RedisSync::Test::redis_object(
	extra => [ '--client-output-buffer-limit', 'normal 1mb 1mb 0' ]);
$redis->start;
my $node = RedisSync::Test::new_node(
	'push_limit',
	redis      => $redis,
	extra_conf => "redis_sync.max_buffer_bytes = '1GB'\n");

$node->safe_psql('postgres', qq{
CREATE TABLE s (id int PRIMARY KEY, v int);
CREATE TABLE e (id int PRIMARY KEY, v int);
INSERT INTO s SELECT g, g FROM generate_series(1, $ROWS) g;
INSERT INTO e SELECT g, g FROM generate_series(1, $ROWS) g;
SELECT redis_sync.write_through('s', key_prefix => 's:', consistency => 'strict', warm => false);
SELECT redis_sync.write_through('e', key_prefix => 'e:', consistency => 'eventual', warm => false);
SELECT redis_sync.warm('s'), redis_sync.warm('e');
});

is($redis->cli('CONFIG', 'GET', 'client-output-buffer-limit') =~ /normal 1048576 1048576 0/ ? 1 : 0, 1,
	'Redis limits a normal client\'s output buffer to 1 MB');
my $dropped = sub {
	return scalar(() = slurp_file("$redis->{dir}/redis.log") =~ /scheduled to be closed ASAP/g);
};

# what Redis holds (read by Redis itself) and what the table holds
sub cache_sums { return RedisSync::Compare::int_sums_cache($redis, "$_[0]:", $_[1]); }
sub table_sums { return RedisSync::Compare::int_sums_table($node, $_[0]); }

is(cache_sums('s', $ROWS), table_sums('s'), 'start: s cached');

my ($rc, $out, $err) = $node->psql('postgres', 'UPDATE s SET v = v + 1');
is($rc, 0, "a strict UPDATE of $ROWS rows commits under the limit") or diag($err);
is(cache_sums('s', $ROWS), table_sums('s'), 'Redis holds the strict table\'s rows');

($rc, $out, $err) = $node->psql('postgres', 'UPDATE e SET v = v + 1');
is($rc, 0, "an eventual UPDATE of $ROWS rows commits") or diag($err);
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), '0',
	'... pushed at commit, nothing queued in the outbox');
is(cache_sums('e', $ROWS), table_sums('e'), 'Redis holds the eventual table\'s rows');

# an INSERT and a DELETE of as many rows: keys and versions created, keys
# removed and tombstones written
($rc, $out, $err) = $node->psql('postgres',
	"INSERT INTO s SELECT g, g FROM generate_series($ROWS + 1, 2 * $ROWS) g");
is($rc, 0, "a strict INSERT of $ROWS rows commits under the limit") or diag($err);
($rc, $out, $err) = $node->psql('postgres', "DELETE FROM s WHERE id <= $ROWS");
is($rc, 0, "a strict DELETE of $ROWS rows commits under the limit") or diag($err);
is(cache_sums('s', 2 * $ROWS), table_sums('s'), 'Redis holds the strict table\'s rows after both');

is($dropped->(), 0, 'Redis closed no client for its output buffer (redis.log)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('s')}), '0',
	'verify(): s has no difference');

done_testing();

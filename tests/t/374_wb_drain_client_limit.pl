# The write-behind drain under a Redis that limits a client's output buffer
# (client-output-buffer-limit normal 1mb).  The drain read a batch's values
# in one pipeline, and the overlapped drain left the next batch's replies
# unread while it applied a batch: 5,000 hashes of 1 kB (a batch of the
# default size) are 5 MB of replies, so Redis dropped the worker at every
# attempt, the claimed members went back to the processing set, and no row
# was ever drained (README's Limitations said so, with batch_size 500 as the
# workaround).  The drain now reads a batch's values in pages Redis may hold
# unread (drain.c, "Reading the claimed values"); a page that fails anyway
# caps the table's pages.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wblimit', redis => $redis);

my $limit = sub {
	is($redis->cli('CONFIG', 'SET', 'client-output-buffer-limit', $_[0]), 'OK',
		"client-output-buffer-limit $_[0]");
};
my $dropped = sub {
	return scalar(() = slurp_file("$redis->{dir}/redis.log") =~ /scheduled to be closed ASAP/g);
};

# an ordinary table with NOT NULL columns, half of its rows there already
# (the drain updates them) and half not (it inserts them); the default
# batch_size (5,000)
$node->safe_psql('postgres', q{
CREATE TABLE wbl (id int PRIMARY KEY, payload text NOT NULL, n int NOT NULL);
INSERT INTO wbl SELECT g, 'old', 0 FROM generate_series(1, 10000) g;
SELECT redis_sync.write_behind('wbl', key_prefix => 'wbl:', flush_interval => '100 ms');
CREATE TABLE cnt (id int PRIMARY KEY, views bigint NOT NULL DEFAULT 0, note text NOT NULL DEFAULT '');
SELECT redis_sync.write_behind('cnt', key_prefix => 'cnt:', counters => '{views}',
                               flush_interval => '100 ms');
});

my $drained = sub {
	my ($sql, $want) = @_;
	return RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', $sql) eq $want }, 90, 0.2);
};

# a first drain, before the limit: the worker asks Redis for its limits
# (CONFIG GET) and finds none, so it reads a batch in one page
$redis->cli('HSET', 'wbl:1', 'payload', 'first', 'n', 1);
$redis->cli('SADD', 'wbl:dirty', 1);
ok(defined $drained->(q{SELECT count(*) FROM wbl WHERE payload = 'first'}, '1'),
	'a drain before the limit');

# the limit appears on the worker's connection
$limit->('normal 1mb 1mb 0');

# 20,000 hashes of about 1 kB made dirty at once: 20 MB of values
is( $redis->cli('EVAL', q{
for i = 1, 20000 do
  redis.call('HSET', 'wbl:' .. i, 'payload', string.rep(string.char(97 + i % 26), 1000), 'n', i + 1)
  redis.call('SADD', 'wbl:dirty', i)
end
return 'OK'}, 0), 'OK', 'the application wrote 20,000 hashes of 1 kB');

ok(defined $drained->(q{SELECT count(*) FROM wbl WHERE n = id + 1 AND length(payload) = 1000}, '20000'),
	'under the limit, the drain writes all 20,000 rows');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wbl WHERE payload <> repeat(chr(97 + id % 26), 1000)}),
	'0', '... each with its own value');
is($redis->cli('SCARD', 'wbl:dirty') . '/' . $redis->cli('SCARD', '{wbl:dirty}:rs_processing'),
	'0/0', '... and the dirty and processing sets are empty');
# the first batch read in one page (the limit came after the worker asked)
# is dropped; the new connection asks again and finds the limit, but sizes
# the retry's pages by the batch before (one value of 40 bytes): its first
# page, capped at a quarter of the failed one (1,250 values), may be
# dropped too; the next (312) gets through
my $first_drops = $dropped->();
cmp_ok($first_drops, '<=', 2, 'Redis dropped the worker twice at most');

# a table with counters: its reads are pairs (the value, and whether the
# extension seeded the key)
is( $redis->cli('EVAL', q{
for i = 1, 5000 do
  redis.call('HSET', 'cnt:' .. i, 'views', i, 'note', string.rep('n', 1000))
  redis.call('SADD', 'cnt:dirty', i)
end
return 'OK'}, 0), 'OK', 'the application wrote 5,000 counter hashes of 1 kB');
ok(defined $drained->(q{SELECT count(*) FROM cnt WHERE views = id AND length(note) = 1000}, '5000'),
	'under the limit, the drain writes all 5,000 counters');
is($dropped->(), $first_drops, 'Redis dropped no client since');

# values of very different sizes: 40 of 300 kB among 5,000 of 1 kB, made
# after the batches of 1 kB values above set the page size.  A page of
# 1 kB values that holds a few of the large ones passes the limit: the
# page fails, the table's pages are capped, and the retries get through.
is( $redis->cli('EVAL', q{
for i = 1, 5000 do
  local size = 1000
  if i % 125 == 0 then size = 300000 end
  redis.call('HSET', 'wbl:' .. i, 'payload', string.rep('z', size), 'n', i + 2)
  redis.call('SADD', 'wbl:dirty', i)
end
return 'OK'}, 0), 'OK', 'the application wrote 5,000 hashes, 40 of them of 300 kB');
ok( defined $drained->(
		q{SELECT count(*) FROM wbl WHERE n = id + 2
		     AND length(payload) = CASE WHEN id % 125 = 0 THEN 300000 ELSE 1000 END}, '5000'),
	'under the limit, the drain writes them all');
note('clients Redis dropped meanwhile: ' . $dropped->());

# one value larger than the limit: Redis cannot send it to anyone.  It
# went first into every recovery batch and failed it, so the table drained
# nothing else (review helper-102); now it goes to the dead letters.
$node->safe_psql('postgres', q{
CREATE TABLE sz (id int PRIMARY KEY, payload text NOT NULL);
SELECT redis_sync.write_behind('sz', key_prefix => 'sz:', flush_interval => '1 h');
});
my $fill = sub {
	my ($tbl, $n, $size, $big) = @_;
	$redis->cli('EVAL', qq{
for i = 1, $n do
  local size = $size
  if i == $big then size = 1200000 end
  redis.call('HSET', '$tbl:' .. i, 'payload', string.rep('s', size))
  redis.call('SADD', '$tbl:dirty', i)
end
return 'OK'}, 0);
};
$fill->('sz', 2000, 100, 777);
$node->safe_psql('postgres', 'SELECT redis_sync.flush()');
ok( defined $drained->(
		q{SELECT count(*) FROM sz WHERE length(payload) = 100}
		  . q{ AND (SELECT count(*) FROM redis_sync.dead_letters) = 1}, '1999'),
	'under the limit, a value of 1.2 MB does not hold the table: the other 1,999 rows are written');
like($node->safe_psql('postgres', q{SELECT member || ': ' || error FROM redis_sync.dead_letters}),
	qr/^777: .*closed the connection at each of two reads of the key \(\d+ bytes by MEMORY USAGE\)/,
	'... and the large one is a dead letter that says why');
ok( defined RedisSync::Compare::wait_for(
		sub { $redis->cli('SCARD', '{sz:dirty}:rs_processing') eq '0' }, 30, 0.2),
	'... and leaves the processing set');
is($node->safe_psql('postgres', q{SELECT redis_sync.discard_dead_letters('sz')}), '1', 'the dead letter is discarded');

# the drain goes on as usual without the limit
$limit->('normal 0 0 0');

# one large value does not make later batches read a member a round trip:
# the pages after it are sized by the values read last (review helper-102:
# the next batch took 5,026 reads from Redis, 38 without the large value)
my $reads = sub {
	my ($n) = $redis->cli('INFO', 'stats') =~ /total_reads_processed:(\d+)/;
	return $n;
};
my $flush_reads = sub {
	my $before = $reads->();
	$node->safe_psql('postgres', 'SELECT redis_sync.flush()');
	return $reads->() - $before;
};
$node->safe_psql('postgres', q{
CREATE TABLE sy (id int PRIMARY KEY, payload text NOT NULL);
SELECT redis_sync.write_behind('sy', key_prefix => 'sy:', flush_interval => '1 h');
});
$fill->('sy', 4000, 100, 0);
$flush_reads->();    # the table's first batch: its first page is one member
$fill->('sy', 4000, 100, 0);
my $usual = $flush_reads->();
$fill->('sy', 4000, 100, 2);
$flush_reads->();
is($node->safe_psql('postgres', q{SELECT count(*) FROM sy WHERE id = 2 AND length(payload) = 1200000}),
	'1', 'without the limit the value of 1.2 MB is written');
$fill->('sy', 4000, 100, 0);
my $after = $flush_reads->();
cmp_ok($after, '<', $usual + 100,
	"the batch after the large value takes about the reads of a usual one ($after against $usual)");

$redis->cli('EVAL', q{
for i = 1, 20000 do
  redis.call('HSET', 'wbl:' .. i, 'n', i + 3)
  redis.call('SADD', 'wbl:dirty', i)
end
return 'OK'}, 0);
$node->safe_psql('postgres', 'SELECT redis_sync.flush()');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wbl WHERE n = id + 3}), '20000',
	'flush() drains every row once the limit is lifted');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.dead_letters}), '0',
	'no dead letters');

$node->stop;
done_testing();

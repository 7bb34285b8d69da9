# A TRUNCATE's purge deletes every key under the table's prefix that SCAN
# finds, and the keys of the table's queued outbox entries, whose delivery
# could otherwise bring a truncated row back when their key is missing from
# Redis (outbox.c rs_purge_send).  An entry the worker delivers while the
# purge runs must be caught by one or the other.
#
# The entries were read after the SCAN (and, since the purge goes a page at
# a time, after every SCAN page's deletes had been sent): an entry of a key
# missing from Redis, pushed by the worker after the SCAN had passed its
# slot and settled (removed from the outbox) before the read, was in
# neither, and the truncated row stayed cached, the table empty.
#
# Here: 30,000 cached rows and a million other keys (so that the SCAN's
# second pass, over strings, lasts a second), one row queued (Redis was
# stopped when it committed; the worker paused); the TRUNCATE's hash pass
# is seen ending (DBSIZE) and the worker resumed then.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time sleep);

my $redis = RedisSync::Test::start_redis();
# (before the server starts: the EVAL keeps Redis busy for a while)
$redis->cli('EVAL', "for i = 1, 1000000 do redis.call('SET', 'pad:' .. i, 'x') end", '0');
my $node = RedisSync::Test::new_node('purge_queued_race', redis => $redis,
	extra_conf => "redis_sync.command_timeout = '1s'\nredis_sync.connect_timeout = '1s'\n");

my $N = 30000;
$node->safe_psql('postgres', qq{
CREATE TABLE rz (id int PRIMARY KEY, v text);
INSERT INTO rz SELECT g, 'r' || g FROM generate_series(1, $N) g;
SELECT redis_sync.write_through('rz', key_prefix => 'rz:', warm => false);
SELECT redis_sync.warm('rz');
});
is($redis->cli('HGET', 'rz:1', 'v'), 'r1', 'the table is cached');
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');

# a row whose push fails: queued for the worker, its key missing from Redis
my $rpid = $redis->cli('INFO', 'server') =~ /process_id:(\d+)/ ? $1 : die 'no redis pid';
kill 'STOP', $rpid;
my ($ret) = $node->psql('postgres', q{INSERT INTO rz VALUES (999999, 'late')});
kill 'CONT', $rpid;
is($ret, 0, 'the row committed with Redis stopped');
is($node->safe_psql('postgres', q{SELECT op::text || ' ' || redis_key FROM redis_sync.outbox}),
	'H rz:999999', 'its change is queued');
is($redis->cli('EXISTS', 'rz:999999'), '0', 'its key is not cached');

my $d0 = $redis->cli('DBSIZE');
my $s  = RedisSync::Test::session($node);
$s->start_query('TRUNCATE rz');
# each cached row's purge removes its key (its version key stays): the hash
# pass is (about) over once DBSIZE fell by N (a tombstone or two created)
my $deadline = time + 120;
my $size;
do { sleep 0.01; $size = $redis->cli('DBSIZE'); }
  while ($size > $d0 - $N + 5 && time < $deadline);
note("DBSIZE $d0 before the TRUNCATE, $size now");
cmp_ok($size, '<=', $d0 - $N + 5, "the purge removed the $N cached rows");
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
my $r = $s->finish_query;
is($r->{err}, '', 'TRUNCATE committed');

ok( defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox') eq '0' }, 60),
	'the worker delivered the queued row');
is($node->safe_psql('postgres', 'SELECT count(*) FROM rz'), '0', 'the table is empty');
is($redis->cli('EXISTS', 'rz:999999'), '0', 'the truncated row is not cached');

$s->quit;
$node->stop;
$redis->stop;
done_testing();

# A TRUNCATE's purge whose deletes reach Redis after their sender gave up
# must not remove rows its own transaction wrote after the TRUNCATE.
#
# Since the purge goes a page at a time (outbox.c rs_purge_send), its deletes
# travel in round trips of their own, before the rows' push.  When one of
# them times out, an eventual table's transaction commits with everything
# queued: the purge, and the rows it inserted after the TRUNCATE, both at the
# transaction's version v.  The worker delivers them (the purge's deletes
# below v, purge_version(), the rows at v).  A network (or a stalled Redis)
# may still deliver the timed-out page afterwards: its deletes carried v
# itself, and the fence applies equal versions, so they removed the rows
# the worker had just written; nothing repairs them (the transaction
# committed).  Before the page-at-a-time purge, the deletes shared the rows'
# pipeline and a late one landed just before the rows.
#
# The hold proxy (tests/lib/hold_proxy.pl) models the late delivery: armed
# with arm_eval, it holds the connection that sends the purge's first
# EVALSHA (its SCAN passed) and delivers the bytes on release.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::HoldProxy;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $proxy = RedisSync::HoldProxy->start(upstream => $redis->port);
my $node  = RedisSync::Test::new_node(
	'purge_late',
	redis_url  => $proxy->url,
	extra_conf => "redis_sync.command_timeout = '1s'\nredis_sync.connect_timeout = '1s'\n");

$node->safe_psql('postgres', q{
CREATE TABLE lt (id int PRIMARY KEY, v text);
INSERT INTO lt SELECT g, 'old' || g FROM generate_series(1, 20) g;
SELECT redis_sync.write_through('lt', key_prefix => 'lt:', warm => false);
SELECT redis_sync.warm('lt');
});
is($redis->cli('HGET', 'lt:1', 'v'), 'old1', 'the table is cached');

# the worker waits: the session's purge is the only EVALSHA sent
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$proxy->arm_eval;
my ($ret, $out, $err) = $node->psql('postgres', q{
BEGIN;
TRUNCATE lt;
INSERT INTO lt SELECT g, 'new' || g FROM generate_series(1, 5) g;
COMMIT;
});
is($ret, 0, 'the eventual transaction committed although its purge timed out');
ok(scalar($proxy->grep_lines(qr/^hold \d+$/)) == 1, "the purge's deletes are held");
is($node->safe_psql('postgres', q{SELECT string_agg(op::text, '' ORDER BY id) FROM redis_sync.outbox}),
	'THHHHH', 'the purge and the five rows are queued');

# the worker delivers the purge and the rows, on a connection of its own
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
ok( defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox') eq '0' }, 60),
	'the worker delivered the queued purge and rows');
is($redis->cli('HGET', 'lt:1', 'v'), 'new1', 'the new row is cached');
is($redis->cli('EXISTS', 'lt:20'), '0', 'the truncated rows are gone');

# the network delivers the timed-out page now
my %r = $proxy->release;
ok((grep { $_->[0] eq 'released' } values %r) == 1, 'the held deletes reached Redis');
# a round trip on a connection of Redis's own: it ran what came before
is($redis->cli('PING'), 'PONG', 'Redis answers');
sleep 1;

is($redis->cli('HGET', 'lt:1', 'v'), 'new1', "the late delete did not remove the transaction's own row");
my @gone = grep { $redis->cli('EXISTS', "lt:$_") ne '1' } 1 .. 5;
is("@gone", '', 'every row inserted after the TRUNCATE is still cached');

$node->stop;
$proxy->stop;
$redis->stop;
done_testing();

# Outbox delivery over TLS: a call of 2,000 entries or more overlaps its
# batches (redis_pipeline_try_send / try_receive: sent without waiting,
# the replies read once the next batch is built).  Over TLS the send is a
# real send, not an exec: every entry lands, refusals in several batches
# stay queued once each, and a connection killed while a batch is in flight
# leaves nothing behind once delivered again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::TLS;
use Test::More;

my $pki   = RedisSync::TLS::make_pki();
my $redis = RedisSync::TLS::start_tls_redis($pki);
my $node  = RedisSync::Test::new_node('ovtls', redis_url => $redis->url,
	extra_conf => RedisSync::TLS::tls_conf($pki, verify => 'full'));

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
SELECT redis_sync.worker_pause();
CREATE TABLE o (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('o', key_prefix => 'o:', delivery => 'async', warm => false);
});
# a string where a hash goes, in the first, second and fourth batch
for my $i (10, 3000, 9000)
{
	$redis->cli('SET', "o:$i", 'not a hash');
	$redis->cli('SET', "{o:$i}:rs_version", '000000000000000000000000');
}
sq(q{INSERT INTO o SELECT g, repeat('x', 300) || g FROM generate_series(1, 10000) g});
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.deliver_outbox(10000)});
is($out, '9997', 'delivered all but the refused entries over TLS');
like($err, qr/Redis refused 3 outbox entries/, 'one WARNING for the three refusals');
is(sq(q{SELECT string_agg(redis_key || '/' || attempts, ',' ORDER BY id) FROM redis_sync.outbox}),
	'o:10/1,o:3000/1,o:9000/1', 'the refused entries stay queued, once each');
is(sq(q{SELECT count(*) FROM o WHERE id NOT IN (10, 3000, 9000)
          AND redis_sync.command('HGET', 'o:' || id, 'v') = to_jsonb(v)}),
	'9997', 'every other row is cached');
$redis->cli('DEL', "o:$_") for (10, 3000, 9000);
sq(q{UPDATE redis_sync.outbox SET next_attempt_at = NULL});

# kill the backend's connections while batches are in flight
for my $round (1 .. 4)
{
	sq(qq{UPDATE o SET v = v || '.$round'});
	my $h = $node->background_psql('postgres', on_error_stop => 0);
	$h->query_until(qr/start/, "\\echo start\nSELECT redis_sync.deliver_outbox(1000000);\n");
	for (1 .. 5)
	{
		select(undef, undef, undef, 0.02 * $round);
		$redis->cli('CLIENT', 'KILL', 'TYPE', 'normal');
	}
	$h->quit;
}
is(sq(q{SELECT redis_sync.deliver_outbox(1000000) >= 0}), 't', 'delivered again');
is(sq(q{SELECT count(*) FROM redis_sync.outbox}), '0', 'outbox drained');
is(sq(q{SELECT count(*) FROM o WHERE redis_sync.command('HGET', 'o:' || id, 'v') = to_jsonb(v)}),
	'10000', 'every row cached with its newest value');

done_testing();

# What a delivery read and did not deliver stays queued, unchanged but for
# the attempt it records, and what others do to queued entries meanwhile
# still applies to them:
#   (1) an entry Redis refused stays with the same id, key, payload (a
#       large one, stored out of line, too), version, seq, xid and enqueue
#       time, one more attempt, its error and a retry time;
#   (2) the worker, whose batches commit even when Redis fails, loses
#       nothing when its connection dies while batches are in flight (the
#       batch in flight fails, the one read after it is never sent): once
#       Redis answers again every row is cached with its newest value;
#   (3) an outbox with a trigger is delivered the same, its trigger run;
#   (4) a DELETE of queued entries (DROP TABLE's, or by hand) waiting for a
#       deliverer that holds them and fails to deliver them removes them
#       once the deliverer commits.  A delivery that deleted the entries it
#       read and put the failed ones back as new rows (tried as a speed-up)
#       left them behind: the waiting DELETE saw its rows deleted and never
#       the new ones.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('taken', redis_url => $redis->url);

sub sq { return $node->safe_psql('postgres', $_[0]); }

# ------------------------------------------------- (1) refused entries go back
sq(q{
	SELECT redis_sync.worker_pause();
	CREATE TABLE r (id int PRIMARY KEY, v text);
	SELECT redis_sync.write_through('r', key_prefix => 'r:', delivery => 'async', warm => false);
});
# a string where a hash goes, with a version below the entries': refused
for my $i (1, 2)
{
	$redis->cli('SET', "r:$i", 'not a hash');
	$redis->cli('SET', "{r:$i}:rs_version", '000000000000000000000000');
}
# row 2's value is large and random: stored out of line in the outbox
sq(q{
	INSERT INTO r VALUES (1, 'small'),
	  (2, (SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 4000) g)),
	  (3, 'fine');
});
is(sq(q{SELECT count(*) FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid
          WHERE c.oid = 'redis_sync.outbox'::regclass
            AND (SELECT pg_relation_size(t.oid)) > 0}),
	'1', 'the large payload is stored out of line');
sq(q{CREATE TABLE before AS
       SELECT id, relid, redis_key, op, payload, ttl_ms, version, seq, xid::text AS xid, enqueued_at
         FROM redis_sync.outbox});
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.deliver_outbox(100)});
is($out, '1', 'one entry delivered');
like($err, qr/Redis refused 2 outbox entries/, 'two refused');
is(sq(q{SELECT count(*) FROM redis_sync.outbox o JOIN before b USING (id)
          WHERE (o.relid, o.redis_key, o.op, o.payload, o.ttl_ms, o.version, o.seq, o.xid::text, o.enqueued_at)
                = (b.relid, b.redis_key, b.op, b.payload, b.ttl_ms, b.version, b.seq, b.xid, b.enqueued_at)}),
	'2', 'the refused entries are back with the same id and columns (the large payload too)');
is(sq(q{SELECT string_agg(redis_key || '/' || attempts || '/' || (last_error LIKE '%WRONGTYPE%')
                          || '/' || (next_attempt_at > enqueued_at), ',' ORDER BY id)
          FROM redis_sync.outbox}),
	'r:1/1/true/true,r:2/1/true/true', 'each with one attempt, its error and a retry time');
is($redis->cli('HGET', 'r:3', 'v'), 'fine', 'the delivered entry is in Redis');
# once more: the attempt count goes on from the row put back
sq(q{UPDATE redis_sync.outbox SET next_attempt_at = NULL});
($ret, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.deliver_outbox(100)});
is(sq(q{SELECT string_agg(attempts::text, ',' ORDER BY id) FROM redis_sync.outbox}),
	'2,2', 'refused again: two attempts each');
$redis->cli('DEL', 'r:1', 'r:2', '{r:1}:rs_version', '{r:2}:rs_version');
sq(q{UPDATE redis_sync.outbox SET next_attempt_at = NULL});
is(sq(q{SELECT redis_sync.deliver_outbox(100)}), '2', 'delivered once Redis takes them');
is(sq(q{SELECT count(*) FROM r WHERE redis_sync.command('HGET', 'r:' || id, 'v') = to_jsonb(v)}),
	'3', 'every row cached, the large one too');
sq(q{SELECT redis_sync.worker_resume()});

# --------------------- (2) the worker's connection dies with batches in flight
sq(q{
	CREATE TABLE w (id int PRIMARY KEY, v text);
	INSERT INTO w SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
	SELECT redis_sync.write_through('w', key_prefix => 'w:', delivery => 'async');
});
my $lost = 0;
for my $round (1 .. 8)
{
	sq(q{SELECT redis_sync.worker_pause()});
	sq(qq{UPDATE w SET v = repeat('y', 200) || '$round'});
	my $from = -s $node->logfile;
	sq(q{SELECT redis_sync.worker_resume()});
	# kill its connection while it delivers the 20,000 entries (overlapped
	# batches of 2,500), until the outbox is empty
	my $deadline = time + 60;
	while (time < $deadline)
	{
		$redis->cli('CLIENT', 'KILL', 'TYPE', 'normal');
		last if sq(q{SELECT count(*) = 0 FROM redis_sync.outbox}) eq 't';
		select(undef, undef, undef, 0.005 * $round);
	}
	$node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM redis_sync.outbox')
	  or die 'the outbox did not drain';
	$lost++ if slurp_file($node->logfile, $from) =~ /redis_sync worker: could not deliver the outbox: lost connection/;
	is(sq(q{SELECT count(*) FROM w WHERE redis_sync.command('HGET', 'w:' || id, 'v') = to_jsonb(v)}),
		'20000', "round $round: every row cached with its newest value");
}
cmp_ok($lost, '>', 0, 'the worker lost its connection during a delivery in some round');

# ---------------------- (3) an outbox with a trigger
sq(q{
	SELECT redis_sync.worker_pause();
	CREATE TABLE seen (n int);
	CREATE FUNCTION public.outbox_seen() RETURNS trigger LANGUAGE plpgsql
	  AS $$ BEGIN INSERT INTO public.seen VALUES (1); RETURN OLD; END $$;
	CREATE TRIGGER seen AFTER DELETE ON redis_sync.outbox FOR EACH ROW EXECUTE FUNCTION public.outbox_seen();
	UPDATE r SET v = v || '!' WHERE id IN (1, 3);
});
is(sq(q{SELECT redis_sync.deliver_outbox(100)}), '2', 'delivered through an outbox with a trigger');
is(sq(q{SELECT count(*) FROM seen}), '2', 'its delete trigger ran for each entry');
is(sq(q{SELECT count(*) FROM r WHERE redis_sync.command('HGET', 'r:' || id, 'v') = to_jsonb(v)}),
	'3', 'every row cached');
sq(q{DROP TRIGGER seen ON redis_sync.outbox});

# ------------- (4) a DELETE waiting for a deliverer that fails to deliver
# the worker is still paused: a session delivers, Redis refuses r:1's entry
$redis->cli('SET', 'r:1', 'not a hash');
$redis->cli('SET', '{r:1}:rs_version', '000000000000000000000000');
sq(q{UPDATE r SET v = v || '?' WHERE id = 1});
my $deliverer = RedisSync::Test::session($node);
$deliverer->query('BEGIN');
like($deliverer->query('SELECT redis_sync.deliver_outbox(100)')->{err}, qr/Redis refused 1 outbox entries/,
	'a session delivers, Redis refuses the entry; its transaction stays open');
my $dropper = RedisSync::Test::session($node);
$dropper->start_query(q{DELETE FROM redis_sync.outbox WHERE relid = 'r'::regclass});
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
                                       WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM redis_sync.outbox%'})
  or die 'the DELETE did not wait';
$deliverer->query('COMMIT');
is($dropper->finish_query->{err}, '', 'the DELETE ends once the deliverer commits');
is(sq(q{SELECT count(*) FROM redis_sync.outbox WHERE relid = 'r'::regclass}), '0',
	'and removed the entry the deliverer kept queued');
$deliverer->quit;
$dropper->quit;
sq(q{SELECT redis_sync.worker_resume()});

done_testing();

# A TRUNCATE cancelled while its purge waits on Redis warns that the purge
# was sent.  The purge's deletes leave tombstones newer than the rows the
# rolled-back TRUNCATE kept, and no repair writes those rows back: only
# warm() repopulates them.  The warning (and its hint) came only from the
# repair after a push whose replies were all read; a cancel in the wait for
# the replies (the deletes sent, their outcome unknown) skipped it, and the
# cache silently missed every row the purge had deleted.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('trunc_cancel', redis => $redis,
	extra_conf => "redis_sync.command_timeout = '60s'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:', warm => false);
INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g;
});
is($redis->cli('HGET', 't:7', 'v'), 'x', 'the rows are cached');

# the session connects to Redis first, then waits on an advisory lock this
# test holds; Redis pauses writes (SCAN still answers) and the lock is
# released: the TRUNCATE's commit sends its deletes and waits for them
my $lock = RedisSync::Test::session($node);
$lock->query('SELECT pg_advisory_lock(202)');
my $c = RedisSync::Test::session($node);
is($c->query(q{UPDATE t SET v = 'x' WHERE id = 1})->{err}, '', 'the session is connected to Redis');
my $cpid = $c->query('SELECT pg_backend_pid()')->{out};
$c->start_query("BEGIN;\nTRUNCATE t;\nSELECT pg_advisory_lock(202);\nCOMMIT;");
ok(defined RedisSync::Compare::wait_for(
		sub {
			sq("SELECT wait_event FROM pg_stat_activity WHERE pid = $cpid") eq 'advisory';
		},
		30),
	'the session waits for the lock');
is($redis->cli('CLIENT', 'PAUSE', '3000', 'WRITE'), 'OK', 'Redis pauses writes for 3 s');
$lock->query('SELECT pg_advisory_unlock(202)');
ok(defined RedisSync::Compare::wait_for(
		sub {
			sq("SELECT count(*) FROM pg_stat_activity WHERE pid = $cpid "
				  . "AND query LIKE 'COMMIT%' AND wait_event_type = 'Extension'") eq '1';
		},
		30, 0.01),
	'the COMMIT waits on Redis');
sq("SELECT pg_cancel_backend($cpid)");
my $r = $c->finish_query;
like($r->{err}, qr/canceling statement due to user request/, 'the COMMIT is cancelled');
like($r->{err}, qr/WARNING:  a TRUNCATE or purge was sent to Redis but its transaction rolled back/,
	'the rollback warns that the purge was sent');
like($r->{err}, qr/redis_sync\.warm\(\)/, 'and hints at warm()');
$c->quit;
$lock->quit;
is(sq('SELECT count(*) FROM t'), '100', 'the TRUNCATE rolled back');

# whatever the deletes did, warm() brings the cache back
sleep 3;
sq(q{SELECT redis_sync.warm('t')});
ok(defined RedisSync::Compare::wait_for(
		sub { sq(q{SELECT count(*) FROM redis_sync.verify('t')}) eq '0' }, 60),
	'after warm(): verify() finds nothing');

done_testing();

# README: hset()/hincrby() refuse a change the caller could not make with
# UPDATE under its policies.  hincrby()'s row-level-security probe updates
# the counter to its own value (the new value is known only to Redis), so a
# WITH CHECK on the counter is never tried: bob, whose policy allows n up
# to 100, raised it to 1000 through hincrby(), and the drain applied it as
# the owner.  The probe now tries the value Redis will hold (its current
# value plus the delta; the row's plus the delta when Redis lacks the key).
# (From an adversarial review.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('hincrby_rls', redis => $redis);
$node->safe_psql('postgres', q{
CREATE ROLE alice; CREATE ROLE bob;
CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, note text);
INSERT INTO t VALUES (1, 0, '');
ALTER TABLE t OWNER TO alice;
SET ROLE alice;
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
CREATE POLICY capped ON t USING (true) WITH CHECK (n <= 100);
GRANT SELECT, INSERT, UPDATE ON t TO bob;
SELECT redis_sync.write_behind('t', key_prefix => 't:', dirty_set => 't-dirty', flush_interval => '100 ms',
                               counters => '{n}');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

my ($rc, $out, $err) = $node->psql('postgres', 'SET ROLE bob; UPDATE t SET n = 1000 WHERE id = 1');
like($err, qr/row-level security/, 'bob may not set n past 100 with UPDATE');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE bob; SELECT redis_sync.hset('t', '1', 'n', '1000')});
like($err, qr/row-level security/, 'nor with hset()');

($rc, $out, $err) = $node->psql('postgres', q{SET ROLE bob; SELECT redis_sync.hincrby('t', '1', 'n', 1000)});
isnt($rc, 0, 'hincrby() past the policy\'s check is refused (key not in Redis)') or diag("hincrby returned $out");
# with the key in Redis: its value there counts
$node->safe_psql('postgres', q{SET ROLE bob; SELECT redis_sync.hincrby('t', '1', 'n', 60)});
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE bob; SELECT redis_sync.hincrby('t', '1', 'n', 60)});
isnt($rc, 0, 'a second +60 (120 in Redis) is refused') or diag("hincrby returned $out");
# what was marked drains; note marks the end of the drain
$node->safe_psql('postgres', q{SET ROLE bob; SELECT redis_sync.hset('t', '1', 'note', 'done')});
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT note FROM t WHERE id = 1') eq 'done' }, 30),
	'the drain ran');
cmp_ok($node->safe_psql('postgres', 'SELECT n FROM t WHERE id = 1'), '<=', 100,
	'the row holds no value bob\'s policy forbids');
done_testing();

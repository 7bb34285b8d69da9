# Under row-level security hset() tries the change as the caller (an UPDATE
# in a subtransaction rolled back) and refuses it when the policies do.  Any
# other error of that probe was taken as "the drain will dead-letter it", and
# the change went to Redis and the dirty set: the drain then applied it as
# the owner, past the policies.  A caller makes the probe fail at will: a
# second session of its own holds LOCK TABLE ... IN SHARE MODE (UPDATE on
# the table allows it) and the caller sets lock_timeout.  bob, whose policy
# hides carol's row 2, changed it that way.  The probe's failure must refuse
# the change.  (From an adversarial review.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('hset_rls_probe', redis => $redis);
$node->safe_psql('postgres', q{
CREATE ROLE alice; CREATE ROLE bob;
CREATE TABLE t (id int PRIMARY KEY, who text NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO t VALUES (1, 'bob', 0), (2, 'carol', 0);
ALTER TABLE t OWNER TO alice;
SET ROLE alice;
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON t USING (who = current_user) WITH CHECK (who = current_user);
GRANT SELECT, INSERT, UPDATE ON t TO bob;
SELECT redis_sync.write_behind('t', key_prefix => 't:', dirty_set => 't-dirty', flush_interval => '100 ms');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

my ($rc, $out, $err) = $node->psql('postgres', q{SET ROLE bob; SELECT redis_sync.hset('t', '2', 'n', '99')});
like($err, qr/row-level security/, 'bob may not hset carol\'s row 2');

# bob's own row goes through
$node->safe_psql('postgres', q{SET ROLE bob; SELECT redis_sync.hset('t', '1', 'n', '7')});
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM t WHERE id = 1') eq '7' }, 30),
	'bob\'s own row 1 drains');

# a second session of bob's holds a lock the probe's UPDATE waits for
my $h = RedisSync::Test::session($node);
$h->query('SET ROLE bob');
my $r = $h->query('BEGIN; LOCK TABLE t IN SHARE MODE');
is($r->{err}, '', 'bob\'s second session locks t in SHARE mode');
($rc, $out, $err) = $node->psql('postgres',
	q{SET ROLE bob; SET lock_timeout = '50ms'; SELECT redis_sync.hset('t', '2', 'n', '99')});
isnt($rc, 0, 'hset() of the hidden row 2 fails while its probe cannot run') or diag($out);
$h->query('ROLLBACK');
$h->quit;

is($redis->cli('SISMEMBER', 't-dirty', '2'), '0', 'row 2 is not marked dirty');
# whatever was marked drains: row 1 again, then check row 2
$node->safe_psql('postgres', q{SET ROLE bob; SELECT redis_sync.hset('t', '1', 'n', '8')});
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM t WHERE id = 1') eq '8' }, 30),
	'the drain ran after');
is($node->safe_psql('postgres', 'SELECT n FROM t WHERE id = 2'), '0', 'carol\'s row 2 is unchanged');
done_testing();

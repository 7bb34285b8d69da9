# The triggers redis_sync keeps on a synced table's partitions are not in the
# hands of a partition's owner (ddl.c, _on_trigger_change): a role that owns
# a partition but not the synced table cannot DISABLE, ENABLE REPLICA/ALWAYS
# or DROP them (named, ALL or USER), so the writes to that partition's rows,
# also those the synced table's owner makes through the parent, keep reaching
# Redis.  The synced table's owner may (its explicit choice, with a WARNING
# when it stops them), and the extension's own trigger DDL (write_through()
# again, replica => true, DETACH, unsync(), DROP EXTENSION) still works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('trigger_guard', redis => $redis,
	extra_conf => "redis_sync.naptime = '200ms'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE ROLE app LOGIN;
CREATE ROLE maint LOGIN;
GRANT CREATE ON SCHEMA public TO app, maint;
SET ROLE app;
CREATE TABLE w (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE w_1 PARTITION OF w FOR VALUES FROM (0) TO (100);
CREATE TABLE w_2 PARTITION OF w FOR VALUES FROM (100) TO (200);
CREATE TABLE w_3 PARTITION OF w FOR VALUES FROM (200) TO (300);
CREATE TABLE i (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE i_1 PARTITION OF i FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('w', key_prefix => 'w:');
SELECT redis_sync.invalidate('i', key_prefix => 'i:');
RESET ROLE;
ALTER TABLE w_2 OWNER TO maint;
ALTER TABLE i_1 OWNER TO maint;
SET ROLE app;
INSERT INTO w VALUES (1, 'a'), (101, 'a'), (201, 'a');
INSERT INTO i VALUES (1, 'a');
});
is($redis->cli('HGET', 'w:101', 'v'), 'a', 'the row in the other-owned partition is cached');

# the partition owner's commands on the extension's triggers: all refused
my @refused = (
	'ALTER TABLE w_2 DISABLE TRIGGER redis_sync_capture',
	'ALTER TABLE w_2 DISABLE TRIGGER ALL',
	'ALTER TABLE w_2 DISABLE TRIGGER USER',
	'ALTER TABLE w_2 ENABLE REPLICA TRIGGER redis_sync_capture',
	'ALTER TABLE w_2 ENABLE ALWAYS TRIGGER redis_sync_capture',
	'ALTER TABLE w_2 DISABLE TRIGGER redis_sync_truncate_partition',
	'DROP TRIGGER redis_sync_truncate_partition ON w_2',
	'DROP TRIGGER IF EXISTS redis_sync_truncate_partition ON public.w_2',
	'ALTER TRIGGER redis_sync_truncate_partition ON w_2 RENAME TO maint_guard',
	'ALTER TABLE i_1 DISABLE TRIGGER redis_sync_capture',
	'DROP TRIGGER redis_sync_truncate_partition ON i_1');
my $n = 0;
for my $cmd (@refused)
{
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE maint; $cmd",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	isnt($rc, 0, "partition owner: $cmd is refused");
	like($err, qr/42501: cannot .* on (w_2|i_1): table (w|i) is synced to Redis/, "  ... with insufficient_privilege naming the synced table")
	  or diag($err);
	# the synced table's owner writes the partition's row through the parent
	$n++;
	$redis->cli('HSET', 'i:1', 'v', 'x');
	sq("SET ROLE app; UPDATE w SET v = 'v$n' WHERE id = 101; UPDATE i SET v = 'v$n' WHERE id = 1;");
	is($redis->cli('HGET', 'w:101', 'v'), "v$n", "  ... the next write through the parent reaches Redis (not stale)");
	is($redis->cli('EXISTS', 'i:1'), '0', "  ... and invalidates the invalidate table's key");
}
like(scalar(($node->psql('postgres', 'SET ROLE maint; ALTER TABLE w_2 DISABLE TRIGGER ALL'))[2]),
	qr/HINT:.*redis_sync\.unsync\(\)/, 'the error hints at the owner and unsync()');
is(sq(q{SELECT string_agg(tgrelid::regclass || '.' || tgname || '=' || tgenabled::text, ' ' ORDER BY tgrelid::regclass::text, tgname)
          FROM pg_trigger WHERE tgrelid IN ('w_2'::regclass, 'i_1'::regclass) AND tgname LIKE 'redis_sync%'}),
	'i_1.redis_sync_capture=O i_1.redis_sync_truncate_partition=O w_2.redis_sync_capture=O w_2.redis_sync_truncate_partition=O',
	'the partition triggers are all there and enabled');

# the writes through the parent by the synced table's owner still arrive
my ($trc, $tout, $terr) = $node->psql('postgres', 'SET ROLE maint; TRUNCATE w_2');
isnt($trc, 0, 'TRUNCATE of the partition is still refused by its guard');

# the partition owner's own triggers are its business
my ($orc, $oout, $oerr) = $node->psql('postgres', q{SET ROLE maint;
CREATE FUNCTION maint_noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE TRIGGER maint_t AFTER INSERT ON w_2 FOR EACH ROW EXECUTE FUNCTION maint_noop();
ALTER TABLE w_2 DISABLE TRIGGER maint_t; ALTER TABLE w_2 ENABLE TRIGGER maint_t;
DROP TRIGGER maint_t ON w_2;});
is($orc, 0, "the partition owner may disable and drop its own triggers") or diag($oerr);

# the synced table's owner may, with a WARNING when the triggers stop
my ($arc, $aout, $aerr) = $node->psql('postgres', q{SET ROLE app;
ALTER TABLE w_1 DISABLE TRIGGER redis_sync_capture;
ALTER TABLE w_1 ENABLE TRIGGER redis_sync_capture;});
is($arc, 0, "the synced table's owner may disable the triggers of its own partition") or diag($aerr);
like($aerr, qr/WARNING:  the writes to the rows of w_1 are no longer pushed to Redis/, '  ... with a WARNING');

# the extension's own trigger DDL: write_through() again with replica (ENABLE
# ALWAYS on every partition, run as a superuser since maint owns w_2),
# DETACH of maint's partition by app, unsync(), DROP EXTENSION
my ($wrc, $wout, $werr) = $node->psql('postgres', q{SELECT redis_sync.write_through('w', key_prefix => 'w:', replica => true, warm => false)});
is($wrc, 0, 'write_through(replica => true) re-creates and re-enables the triggers') or diag($werr);
is(sq(q{SELECT string_agg(DISTINCT tgenabled::text, '') FROM pg_trigger WHERE tgname LIKE 'redis_sync%' AND tgrelid IN (SELECT relid FROM pg_partition_tree('w'))}),
	'A', '  ... all ENABLE ALWAYS');
my ($drc, $dout, $derr) = $node->psql('postgres', 'SET ROLE app; ALTER TABLE w DETACH PARTITION w_2');
is($drc, 0, "DETACH of the other-owned partition by the synced table's owner") or diag($derr);
is(sq(q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'w_2'::regclass AND tgname LIKE 'redis_sync%'}), '0',
	'  ... drops its guard');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 'w:101') eq '0' }, 20),
	'  ... and its rows\' keys');
# unsync() by the synced table's owner: the trigger the extension keeps on
# the partition another role owns goes too (dropped as the extension,
# redis_sync._drop_partition_triggers; it failed with "must be owner of
# relation i_1"); that role may not drop it through the same function
my ($urc, $uout, $uerr) = $node->psql('postgres', q{SET ROLE maint; SELECT redis_sync._drop_partition_triggers('i');});
like($uerr, qr/must be owner of table i/, "the partition's owner may not drop the extension's triggers through unsync()'s helper");
($urc, $uout, $uerr) = $node->psql('postgres', q{SET ROLE app; SELECT redis_sync.unsync('i');});
is($urc, 0, "unsync() by the synced table's owner, a partition owned by another role") or diag($uerr);
is(sq(q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'redis_sync%' AND tgrelid IN ('i'::regclass, 'i_1'::regclass)}), '0',
	'  ... drops all of its triggers');
my ($xrc, $xout, $xerr) = $node->psql('postgres', 'DROP EXTENSION redis_sync CASCADE');
is($xrc, 0, 'DROP EXTENSION ... CASCADE') or diag($xerr);
is(sq(q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'redis_sync%'}), '0', '  ... drops the remaining triggers');
done_testing();

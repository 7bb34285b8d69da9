# The worker's re-seed after a Redis restart (wb_counters.c reseed_table)
# entered the table's owner with rs_as_owner_enter() and no PG_FINALLY: an
# error in between (the owner's policy raising, the warm_timeout cancel, a
# Redis error) skipped rs_as_owner_leave(), and as_owner.c's record of the
# owner whose code runs stayed that owner for the rest of the worker's
# life.  Every later overrun (TAP 295) was then blamed on it: a
# superuser-owned table's trigger that catches the cancel (trusted: not
# stopped) ended the worker, and alice, whose code was not running, was
# held.  Now the re-seed leaves the owner on every path, and an abort
# clears the record.  (From an adversarial review of 2e2a41a.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('stale_untrusted', redis => $redis,
	extra_conf => "redis_sync.drain_timeout = '1s'\nredis_sync.warm_timeout = '1s'\n");

$node->safe_psql('postgres', q{
CREATE ROLE alice;
CREATE TABLE ctl (block bool NOT NULL);
INSERT INTO ctl VALUES (false);
ALTER TABLE ctl OWNER TO alice;
CREATE FUNCTION public.gate() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT block FROM public.ctl) THEN
    RAISE EXCEPTION 'alice''s policy refuses';
  END IF;
  RETURN true;
END $$;
ALTER FUNCTION public.gate() OWNER TO alice;
CREATE TABLE gated (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO gated VALUES (1, 7);
ALTER TABLE gated OWNER TO alice;
ALTER TABLE gated ENABLE ROW LEVEL SECURITY;
ALTER TABLE gated FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON gated USING (public.gate());
SELECT redis_sync.write_behind('gated', key_prefix => 'gated:', dirty_set => 'gated-dirty',
                               counters => '{n}', flush_interval => '100 ms');
CREATE TABLE sumode (mode text NOT NULL);
INSERT INTO sumode VALUES ('off');
CREATE FUNCTION public.su_loop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE LOG 'su_loop enters, mode %', (SELECT mode FROM public.sumode);
  LOOP
    BEGIN
      EXIT WHEN (SELECT mode FROM public.sumode) <> 'loop';
      PERFORM pg_catalog.pg_sleep(0.1);
    EXCEPTION WHEN query_canceled THEN
      RAISE LOG 'su_loop caught the cancel';
    END;
  END LOOP;
  RETURN NEW;
END $$;
CREATE TABLE suw (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
CREATE TRIGGER su_loop BEFORE INSERT OR UPDATE ON suw FOR EACH ROW EXECUTE FUNCTION public.su_loop();
INSERT INTO suw VALUES (1, 0);
SELECT redis_sync.write_behind('suw', key_prefix => 'suw:', dirty_set => 'suw-dirty', flush_interval => '100 ms');
} . RedisSync::OwnerCode::canary_sql());

my $alice = $node->safe_psql('postgres', "SELECT 'alice'::regrole::oid");
my $su    = $node->safe_psql('postgres', "SELECT relowner FROM pg_class WHERE relname = 'suw'");
my $gated = RedisSync::OwnerCode::table_oid($node, 'gated');
my $first = RedisSync::WB::wait_worker($node, timeout => 30);
ok(defined $first, 'worker running');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');
note("alice = $alice, suw's owner = $su (superuser)");

sub overruns
{
	my $log = slurp_file($node->logfile);
	my @r = $log =~ /code run as role (\d+) went on past twice its step's time limit/g;
	return @r;
}

my $base_over = 0;
sub su_loop_round
{
	my ($n) = @_;
	$node->safe_psql('postgres', q{UPDATE sumode SET mode = 'loop'});
	$redis->cli('HSET', 'suw:1', 'n', $n);
	$redis->cli('SADD', 'suw-dirty', '1');
	my $ended = RedisSync::Compare::wait_for(sub { scalar(my @x = overruns()) > $base_over }, 8);
	my $held  = $node->safe_psql('postgres', 'SELECT n FROM suw') ne $n;
	$node->safe_psql('postgres', q{UPDATE sumode SET mode = 'off'});
	return ($ended, $held);
}

# A. control: the superuser's trigger catches the cancel and loops: trusted
my ($ended, $held) = su_loop_round('1');
ok(!defined $ended, 'control: a superuser-owned table\'s trigger does not end the worker');
ok($held, '... (it did hold the drain past twice drain_timeout)');
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM suw') eq '1' }, 30),
	'... and its change lands once it stops');

my $nover = scalar(my @x = overruns());

# B. Redis restarts; alice's policy raises: her re-seed fails, once
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
$redis->stop;
$redis->start;
ok(defined RedisSync::Compare::wait_for(sub {
			$node->log_contains(qr/re-seeding the write-behind keys of table $gated after the Redis restart failed: alice's policy refuses/) }, 60),
	'alice\'s re-seed failed (her policy raised)');
$node->safe_psql('postgres', 'UPDATE ctl SET block = false');

# C. the same superuser trigger as in A
$base_over = $nover;
($ended, $held) = su_loop_round('2');
my @o = grep { defined } (overruns())[$nover .. 10];
ok(!defined $ended, 'after the failed re-seed, the superuser-owned table\'s trigger still does not end the worker')
  or diag("the worker ended itself, naming role $o[0] (alice = $alice)");
ok(!(@o && $o[0] eq $alice), '... and alice, whose code was not running, is not blamed');
ok(!defined RedisSync::Compare::wait_for(sub { $node->log_contains('runs no code of role "alice" until') }, 10),
	'... nor held');
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM suw') eq '2' }, 30),
	'the superuser table\'s change lands');

done_testing();

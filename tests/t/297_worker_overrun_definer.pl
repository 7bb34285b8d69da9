# The second stage of a step's time limit (TAP 295) ends the worker when
# the code still running after the cancel runs on behalf of a table owner
# that is not a superuser, and the next worker runs no code of that owner
# for a while.  The owner is the table's, not the current user: a
# trigger that catches the cancel can spend its time in a SECURITY DEFINER
# function of another role.  Before, the worker took GetUserId(): with a
# plain role's function it quarantined that role (whose own tables then
# waited) and ran the trigger's owner again; with a superuser's function
# it never ended, and the trigger held the worker for good.
#
# And the holds: a repeat doubles the hold, and the worker keeps holds of
# several owners (it kept one: two owners' code took turns ending the
# worker, each let go by the other's hold).
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
my $node  = RedisSync::Test::new_node('overrun_definer', redis => $redis,
	extra_conf => "redis_sync.drain_timeout = '1s'\n");

$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('stubborn', returns => 'trigger', return => 'NEW',
		column => 'mode', type => 'text NOT NULL', initial => q{'off'},
		cond => q{(SELECT mode FROM public.ctl) <> 'off'},
		then => q{LOOP
      BEGIN
        IF (SELECT mode FROM public.ctl) = 'su' THEN
          PERFORM public.su_wait();
        ELSE
          PERFORM public.carol_wait();
        END IF;
      EXCEPTION WHEN query_canceled THEN
        NULL;    -- and wait again, in the other role's function
      END;
    END LOOP;}) . q{
CREATE ROLE carol;
CREATE FUNCTION public.carol_wait() RETURNS void LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog AS 'SELECT pg_catalog.pg_sleep(3600)';
ALTER FUNCTION public.carol_wait() OWNER TO carol;
CREATE FUNCTION public.su_wait() RETURNS void LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog AS 'SELECT pg_catalog.pg_sleep(3600)';
CREATE TABLE wb (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
ALTER TABLE wb OWNER TO alice;
CREATE TRIGGER stubborn BEFORE INSERT OR UPDATE ON wb FOR EACH ROW EXECUTE FUNCTION public.stubborn();
INSERT INTO wb VALUES (1, 0);
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', dirty_set => 'wb-dirty', flush_interval => '100 ms');
CREATE TABLE carols (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
ALTER TABLE carols OWNER TO carol;
INSERT INTO carols VALUES (1, 0);
SELECT redis_sync.write_behind('carols', key_prefix => 'carols:', dirty_set => 'carols-dirty', flush_interval => '100 ms');
GRANT SELECT ON public.ctl TO PUBLIC;
CREATE FUNCTION public.both_loop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT mode FROM public.ctl) = 'both' THEN
    LOOP
      BEGIN
        PERFORM pg_catalog.pg_sleep(3600);
      EXCEPTION WHEN query_canceled THEN
        NULL;
      END;
    END LOOP;
  END IF;
  RETURN NEW;
END $$;
CREATE ROLE erin;
CREATE ROLE frank;
CREATE TABLE we (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
ALTER TABLE we OWNER TO erin;
CREATE TABLE wf (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
ALTER TABLE wf OWNER TO frank;
CREATE TRIGGER both_loop BEFORE INSERT OR UPDATE ON we FOR EACH ROW EXECUTE FUNCTION public.both_loop();
CREATE TRIGGER both_loop BEFORE INSERT OR UPDATE ON wf FOR EACH ROW EXECUTE FUNCTION public.both_loop();
INSERT INTO we VALUES (1, 0);
INSERT INTO wf VALUES (1, 0);
SELECT redis_sync.write_behind('we', key_prefix => 'we:', dirty_set => 'we-dirty', flush_interval => '100 ms');
SELECT redis_sync.write_behind('wf', key_prefix => 'wf:', dirty_set => 'wf-dirty', flush_interval => '100 ms');
}
	. RedisSync::OwnerCode::canary_sql());
my $alice = $node->safe_psql('postgres', "SELECT 'alice'::regrole::oid");
my $first = RedisSync::WB::wait_worker($node, timeout => 30);
ok(defined $first, 'worker running');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'async table delivered');

sub overruns
{
	my $log = slurp_file($node->logfile);
	my @roles = $log =~ /code run as role (\d+) went on past twice its step's time limit/g;
	return @roles;
}

sub carols_drains
{
	my ($n) = @_;
	$redis->cli('HSET', 'carols:1', 'n', $n);
	$redis->cli('SADD', 'carols-dirty', '1');
	return RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SELECT n FROM carols') eq $n }, 10);
}

# 1. the trigger waits in a function of the plain role carol
$node->safe_psql('postgres', q{UPDATE ctl SET mode = 'carol'});
$redis->cli('HSET', 'wb:1', 'n', '42');
$redis->cli('SADD', 'wb-dirty', '1');
ok(defined RedisSync::Compare::wait_for(sub { scalar(overruns()) >= 1 }, 30),
	'carol\'s function: the worker ends itself');
is((overruns())[0], $alice, '... naming the table\'s owner, alice, not carol');
my $second = RedisSync::WB::wait_worker($node, old_pid => $first, timeout => 30);
ok(defined $second && $second != $first, 'a new worker runs');
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('runs no code of role "alice" until') }, 30),
	'... which runs no code of alice for a while');
ok(!$node->log_contains('runs no code of role "carol"'), '... and carol is not held');
ok(defined carols_drains('7'), 'carol\'s own table drains meanwhile');
RedisSync::OwnerCode::canary_set($node, 'one');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'one', 5), 'other tables are delivered');
$node->safe_psql('postgres', q{UPDATE ctl SET mode = 'off'});
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM wb') eq '42' }, 60),
	'after the hold the change lands');

# 2. the trigger waits in a superuser's SECURITY DEFINER function: the
# code still runs on alice's behalf
$node->safe_psql('postgres', q{UPDATE ctl SET mode = 'su'});
$redis->cli('HSET', 'wb:1', 'n', '43');
$redis->cli('SADD', 'wb-dirty', '1');
ok(defined RedisSync::Compare::wait_for(sub { scalar(overruns()) >= 2 }, 30),
	'a superuser\'s function: the worker still ends itself');
is((overruns())[1], $alice, '... naming alice');
ok($node->log_contains(qr/its step's time limit \(1000 ms\) after the cancel; the worker ends, and the next one runs no code of that role for 20 s\n.*DETAIL:  It did so 2 times: each doubles the hold/),
	'a second time: the hold doubles (20 s)');
my $third = RedisSync::WB::wait_worker($node, old_pid => $second, timeout => 30);
ok(defined $third && $third != $second, 'a new worker runs');
RedisSync::OwnerCode::canary_set($node, 'two');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'two', 10), 'other tables are delivered');
ok(defined carols_drains('8'), 'and drained');
$node->safe_psql('postgres', q{UPDATE ctl SET mode = 'off'});
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM wb') eq '43' }, 60),
	'after the hold the change lands, nothing lost');

# 3. two owners' code: both are held at once
my %name = map { $node->safe_psql('postgres', "SELECT '$_'::regrole::oid") => $_ } qw(erin frank);
sub count_in_log
{
	my ($text) = @_;
	my $log = slurp_file($node->logfile);
	my $n = () = $log =~ /\Q$text\E/g;
	return $n;
}
$node->safe_psql('postgres', q{UPDATE ctl SET mode = 'both'});
for my $t (qw(we wf))
{
	$redis->cli('HSET', "$t:1", 'n', '5');
	$redis->cli('SADD', "$t-dirty", '1');
}
ok(defined RedisSync::Compare::wait_for(sub { scalar(overruns()) >= 4 }, 30),
	'both owners\' code ends a worker');
my ($r1, $r2) = map { $name{$_} // 'none' } (overruns())[2, 3];
ok($r1 ne "none" && $r2 ne "none" && $r1 ne $r2, "... of two owners");
ok(defined RedisSync::Compare::wait_for(
		sub { count_in_log(qq{runs no code of role "$r1" until}) >= 2 && count_in_log(qq{runs no code of role "$r2" until}) >= 1 }, 30),
	'the next worker holds both');
is(scalar(overruns()), 4, '... and runs neither: no further end');
RedisSync::OwnerCode::canary_set($node, 'three');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'three', 10), 'other tables are delivered');
is(scalar(overruns()), 4, 'still no further end');
$node->safe_psql('postgres', q{UPDATE ctl SET mode = 'off'});
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', 'SELECT (SELECT n FROM we) + (SELECT n FROM wf)') eq '10' }, 60),
	'after the holds both changes land');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letter');

done_testing();

# The claims of every table of a database recorded again at once
# (rs_claim_all: the worker after Redis restarted empty or evicted the
# claims, claim_prefixes(), the 0.1 -> 0.2 upgrade) go to Redis in batches
# of 250 tables, each one script call that reads the claims hash once.
# They were one claim script per table, each reading the claims that could
# overlap it (an HSCAN of the whole hash), and one subtransaction and
# local check per table: 1.9 s for 1,000 tables (0.25 s of it in Redis),
# about 0.1 s now.  A table a batch cannot record (a conflict with another
# holder, a stale claim of this database) is claimed on its own as before:
# stale claims taken over, conflicts a WARNING naming the holder.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('claims_batched', redis => $redis);
$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('db2', 'CREATE EXTENSION redis_sync');

my $ntab = 600;    # three batches
$node->safe_psql('postgres', qq{
DO \$\$
BEGIN
  FOR i IN 1..$ntab LOOP
    EXECUTE format('CREATE TABLE t_%s (id int PRIMARY KEY, n bigint)', i);
    IF i % 2 = 0 THEN
      PERFORM redis_sync.write_through(format('t_%s', i)::regclass, key_prefix => format('bt%s:', i), warm => false);
    ELSE
      PERFORM redis_sync.write_behind(format('t_%s', i)::regclass, key_prefix => format('bt%s:', i),
                                      flush_interval => '1 h');
    END IF;
  END LOOP;
END \$\$;
});
# the workers record the claims again themselves when they see them gone,
# racing the calls this test makes and counts (CI of 7e894b2 on a loaded
# machine: db2's worker claimed bt3 first, and a worker's single claims
# read the hash): paused for the test
$node->safe_psql($_, 'SELECT redis_sync.worker_pause(30000)') for ('postgres', 'db2');
# write-behind: prefix, dirty set, processing set; write-through: prefix
my $nfields = $ntab / 2 * 3 + $ntab / 2;
is($redis->cli('HLEN', 'redis_sync:claims'), $nfields, "$ntab tables claimed");
my %before = $redis->cli('HGETALL', 'redis_sync:claims') =~ /^(.*)\n(.*)$/mg;
my $sysid = $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
my $dboid = $node->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'postgres'});

sub claim_all
{
	my ($db) = @_;
	my ($ret, $out, $err) = $node->psql($db // 'postgres', 'SELECT redis_sync.claim_prefixes()');
	return ($out, $err);
}

sub calls
{
	my ($cmd) = @_;
	my ($n) = $redis->cli('INFO', 'commandstats') =~ /cmdstat_\Q$cmd\E:calls=(\d+)/;
	return $n // 0;
}

# the claims lost: recorded again in batches
$redis->cli('DEL', 'redis_sync:claims');
$redis->cli('CONFIG', 'RESETSTAT');
my ($out, $err) = claim_all();
is($out, $ntab, 'every table claimed again');
is($err, '', 'without a warning');
is($redis->cli('HLEN', 'redis_sync:claims'), $nfields, 'every field recorded');
my %after = $redis->cli('HGETALL', 'redis_sync:claims') =~ /^(.*)\n(.*)$/mg;
is_deeply(\%after, \%before, 'the same fields and values (holder and description) as the claims made one by one');
# three batch calls and the release at commit (the worker, which saw the
# claims gone, may record them again meanwhile, and runs scripts of its
# own); one claim script per table made 600
cmp_ok(calls('evalsha') + calls('eval'), '<', 30, 'a few script calls, not one per table');
is(calls('hscan'), 0, 'no claim read the hash on its own');

# claimed again while held: nothing changes
($out, $err) = claim_all();
is($out, $ntab, 'claiming what is held succeeds');
%after = $redis->cli('HGETALL', 'redis_sync:claims') =~ /^(.*)\n(.*)$/mg;
is_deeply(\%after, \%before, '... and changes nothing');

# another server's claim over some of the prefixes (the claims were lost,
# and it claimed first): those tables are refused by name, the rest recorded
$redis->cli('DEL', 'redis_sync:claims');
$redis->cli('HSET', 'redis_sync:claims', 'p:bt59', "1/2/3\ttable x of database \"y\" on server 1");
($out, $err) = claim_all();
my @refused = $err =~ /WARNING:  could not claim the key prefix of table (t_\d+): key prefix "bt59\d*:" overlaps key prefix "bt59" claimed by table x of database "y" on server 1/g;
is_deeply([ sort @refused ], [ sort map { "t_$_" } 59, 590 .. 599 ], 'the overlapping tables are refused, each named');
is($out, $ntab - 11, 'the others are claimed');
is($redis->cli('HEXISTS', 'redis_sync:claims', 'p:bt590:'), '0', 'a refused table records nothing');
is($redis->cli('HGET', 'redis_sync:claims', 'p:bt58:'), $before{'p:bt58:'}, 'a table beside them is recorded');
is($redis->cli('HEXISTS', 'redis_sync:claims', 'k:bt591:dirty'), '0', 'a refused dirty set is not recorded');

# a claim under a prefix (a longer key of another holder): refused as well
$redis->cli('HDEL', 'redis_sync:claims', 'p:bt59');
$redis->cli('HSET', 'redis_sync:claims', 'k:bt7:x:set', "1/2/3\tset x");
($out, $err) = claim_all();
like($err, qr/key prefix "bt7:" overlaps key "bt7:x:set" claimed by set x/, 'a key under a prefix is a conflict too');
is($out, $ntab - 1, '... for that table only');
$redis->cli('HDEL', 'redis_sync:claims', 'k:bt7:x:set');

# a stale claim of this database (a table that no longer exists): taken over
$redis->cli('HSET', 'redis_sync:claims', 'p:bt6', "$sysid/$dboid/1\ttable gone");
($out, $err) = claim_all();
is($out, $ntab, 'a stale claim of this database is taken over');
is($err, '', '... without a warning');
is($redis->cli('HEXISTS', 'redis_sync:claims', 'p:bt6'), '0', '... and removed');
is($redis->cli('HGET', 'redis_sync:claims', 'p:bt6:'), $before{'p:bt6:'}, 'the table under it is recorded');

# another database synced an overlapping prefix while the claims were lost:
# whoever records first keeps it, the other is warned
$redis->cli('DEL', 'redis_sync:claims');
$node->safe_psql('db2', q{CREATE TABLE d (id int PRIMARY KEY); SELECT redis_sync.write_through('d', key_prefix => 'bt3', warm => false)});
($out, $err) = claim_all();
like($err, qr/could not claim the key prefix of table t_3: key prefix "bt3:" overlaps key prefix "bt3" claimed by table public\.d of database "db2"/,
	'a table of another database that claimed first is named');
unlike($err, qr/table t_2:/, 'a table beside it is not');
is($out, $ntab - 111, 'the rest are claimed (bt3:, bt30: .. bt39:, bt300: .. bt399:)');

# prefixes with glob and Lua pattern characters are compared as strings
$node->safe_psql('postgres', q{CREATE TABLE odd (id int PRIMARY KEY);
SELECT redis_sync.write_through('odd', key_prefix => 'o%d.[*]?-:', warm => false)});
$redis->cli('DEL', 'redis_sync:claims');
$redis->cli('HSET', 'redis_sync:claims', 'k:o%d.[*]?-:x', "1/2/3\tset y");
$redis->cli('HSET', 'redis_sync:claims', 'k:o%d.[a]?-:x', "1/2/3\tset z");
($out, $err) = claim_all();
like($err, qr/key prefix "o%d\.\[\*\]\?-:" overlaps key "o%d\.\[\*\]\?-:x" claimed by set y/,
	'a key under an odd prefix is a conflict');
unlike($err, qr/set z/, '... a key a glob would match is not');
is($out, $ntab, '... for that table only');
$node->safe_psql('postgres', q{SELECT redis_sync.unsync('odd')});

# Redis out of memory (noeviction) refuses the batches: each table is
# claimed on its own and warned about with Redis's reason, no ERROR
$node->safe_psql('db2', q{SELECT redis_sync.unsync('d')});
$redis->cli('DEL', 'redis_sync:claims');
my ($used) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$redis->cli('CONFIG', 'SET', 'maxmemory', $used - 100000);
my ($ret, $o, $e) = $node->psql('postgres', 'SELECT redis_sync.claim_prefixes()');
is($ret, 0, 'claim_prefixes() succeeds when Redis refuses the claims');
is($o, '0', '... claiming none');
my @oom = $e =~ /WARNING:  could not claim the key prefix of table t_\d+: [^\n]*\nDETAIL:  OOM command not allowed/g;
is(scalar @oom, $ntab, '... with a warning per table giving Redis\'s reason');
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
($out, $err) = claim_all();
is($out, $ntab, 'once Redis has room every table is claimed');

$node->stop;
done_testing();

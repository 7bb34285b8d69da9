# Edges of 0aaf562 (DROP EXTENSION releases its database's prefix claims):
# - a DROP EXTENSION whose transaction fails after pre-commit (here, a
#   serialization failure detected at COMMIT, which PostgreSQL checks after
#   the pre-commit callbacks) must keep the claims: the extension and its
#   syncs are still there;
# - PREPARE TRANSACTION of a DROP EXTENSION cannot release anything (COMMIT
#   PREPARED runs no callback of ours): it must say so, not leave the claims
#   behind silently;
# - a DROP EXTENSION rolled back to a savepoint keeps the claims; DROP SCHEMA
#   redis_sync CASCADE releases them like DROP EXTENSION; the release takes
#   only holders of this database, not of a database whose OID begins with
#   the same digits.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Claims;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('claims_edges', redis => $redis,
	extra_conf => "max_prepared_transactions = 5\n");
my $cl    = RedisSync::Claims->new($node, $redis);
my $sysid = $cl->sysid;

sub sq { return $node->safe_psql(@_); }

$cl->claiming_database($_, 'CREATE TABLE a (id int); CREATE TABLE b (id int);') for qw(ser prep sp sch hung rc);

# 1. serialization failure at COMMIT of a DROP EXTENSION (write skew)
my $s1 = RedisSync::Test::session($node, 'ser');
my $s2 = RedisSync::Test::session($node, 'ser');
$s1->query('BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM a;');
$s2->query('BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM b;');
$s1->query('INSERT INTO b VALUES (1); DROP EXTENSION redis_sync CASCADE;');
$s2->query('INSERT INTO a VALUES (1);');
my $r2 = $s2->query('COMMIT;');
unlike($r2->{err}, qr/ERROR/, 'the other serializable transaction commits');
my $r1 = $s1->query('COMMIT;');
like($r1->{err}, qr/could not serialize access/, 'the DROP EXTENSION transaction fails at COMMIT');
is($cl->has_ext('ser'), '1', '... so the extension is still there');
like($cl->holder('ser:'), $cl->held_by('ser'), '... and so is its claim');
$s1->quit;
$s2->quit;

# 2. PREPARE TRANSACTION of a DROP EXTENSION
my ($ret, $out, $err) = $node->psql('prep',
	"BEGIN; DROP EXTENSION redis_sync CASCADE; PREPARE TRANSACTION 'dx';");
is($ret, 0, 'PREPARE TRANSACTION of a DROP EXTENSION');
like($err, qr/WARNING:  .*prefix claims of database "prep"/,
	'... warns that the claims are not released');
sq('prep', "COMMIT PREPARED 'dx'");
is($cl->has_ext('prep'), '0', 'COMMIT PREPARED dropped the extension');

# 3. DROP EXTENSION rolled back to a savepoint: the claim stays
sq('sp', 'BEGIN; SAVEPOINT s; DROP EXTENSION redis_sync CASCADE; ROLLBACK TO SAVEPOINT s; COMMIT;');
like($cl->holder('sp:'), $cl->held_by('sp'), 'DROP EXTENSION rolled back to a savepoint keeps the claim');

# 4. DROP SCHEMA redis_sync CASCADE drops the extension: claims released,
# a holder whose database OID begins with the same digits is not
my $sch = $cl->db_oid('sch');
$redis->cli('HSET', 'redis_sync:claims', 'p:near:', "$sysid/${sch}1/1\tnear");
$redis->cli('HSET', 'redis_sync:claims', 'p:pre:', "$sysid/" . substr($sch, 0, -1) . "/1\tpre");
($ret, $out, $err) = $node->psql('sch', 'DROP SCHEMA redis_sync CASCADE');
is($ret, 0, 'DROP SCHEMA redis_sync CASCADE');
is($cl->has_ext('sch'), '0', '... drops the extension');
is($cl->holder('sch:'), '', '... and releases the claim');
is($cl->holder('near:'), "$sysid/${sch}1/1\tnear", 'the claim of database OID ' . $sch . '1 stays');
is($cl->holder('pre:'), "$sysid/" . substr($sch, 0, -1) . "/1\tpre", 'the claim of database OID ' . substr($sch, 0, -1) . ' stays');

# 6. DROP and CREATE EXTENSION in one transaction: the claims the new
# configuration needs stay, those of tables it no longer syncs go (they
# stayed, and another database was refused them, naming a table that no
# longer syncs)
sq('rc', "CREATE TABLE c (id int PRIMARY KEY); SELECT redis_sync.write_through('c', key_prefix => 'rca:', warm => false)");
like($cl->holder('rca:'), $cl->held_by('rc'), 'rc claims rca: too');
sq('rc', q{
BEGIN;
DROP EXTENSION redis_sync CASCADE;
CREATE EXTENSION redis_sync;
SELECT redis_sync.write_through('t', key_prefix => 'rc:', warm => false);
COMMIT;
});
like($cl->holder('rc:'), $cl->held_by('rc'), 'DROP and CREATE EXTENSION: the claim synced again stays');
is($cl->holder('rca:'), '', '... the one no longer synced is released');
sq('rc', 'BEGIN; SAVEPOINT s; DROP EXTENSION redis_sync CASCADE; ROLLBACK TO SAVEPOINT s; COMMIT;');
like($cl->holder('rc:'), $cl->held_by('rc'), '... and kept by a drop rolled back to a savepoint');

# 5. Redis hung (SIGSTOP) when the DROP EXTENSION commits: the release runs
# after the commit record, with interrupts held; it must end after
# redis_sync.command_timeout with the WARNING, neither hang nor PANIC
kill 'STOP', $redis->{pid};
my $t0 = time;
($ret, $out, $err) = $node->psql('hung', 'DROP EXTENSION redis_sync CASCADE');
my $took = time - $t0;
kill 'CONT', $redis->{pid};
is($ret, 0, 'DROP EXTENSION commits with Redis hung');
like($err, qr/WARNING:  could not release the key prefix claims of database "hung"/, '... with the warning');
cmp_ok($took, '<', 30, "... within the command timeout ($took s)");
is($cl->has_ext('hung'), '0', '... and the extension is dropped');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is up');

$node->stop;
$redis->stop;
done_testing();

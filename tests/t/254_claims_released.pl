# Prefix claims of holders that are gone no longer block other databases.
# Before, DROP EXTENSION and DROP DATABASE left every claim of the database
# in Redis, and another database of the same server could sync none of
# those prefixes until someone removed them by hand (README, Limitations).
# Now DROP EXTENSION releases its database's claims when it commits (not
# when rolled back, nor when the same transaction creates the extension
# again; a WARNING when Redis is unreachable), and the claim of a database
# of this server that no longer exists is taken over like a dropped table's.
# The claim of a live database is still refused.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Claims;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('claims_released', redis => $redis);
my $cl    = RedisSync::Claims->new($node, $redis);
my $sysid = $cl->sysid;

sub sq { return $node->safe_psql(@_); }

$cl->claiming_database($_) for qw(db2 db3 db4 db5);
sq('postgres', 'CREATE TABLE a (id int PRIMARY KEY, v text)');

# a live database's claim is refused
my ($ret, $out, $err) =
  $node->psql('postgres', "SELECT redis_sync.write_through('a', key_prefix => 'db2:', warm => false)");
like($err, qr/key prefix "db2:" overlaps key prefix "db2:" claimed by table public\.t of database "db2"/,
	"db2's prefix is refused while db2 has it");

# DROP EXTENSION rolled back: the claim stays
sq('db2', 'BEGIN; DROP EXTENSION redis_sync CASCADE; ROLLBACK;');
like($cl->holder('db2:'), $cl->held_by('db2'), 'a rolled-back DROP EXTENSION keeps the claim');

# DROP EXTENSION committed: every claim of db2 is gone, others stay
($ret, $out, $err) = $node->psql('db2', 'DROP EXTENSION redis_sync CASCADE');
is($ret, 0, 'DROP EXTENSION in db2');
unlike($err, qr/WARNING/, '... without a warning');
is($cl->holder('db2:'), '', "db2's claim is released");
like($cl->holder('db3:'), $cl->held_by('db3'), "db3's claim stays");
sq('postgres', "SELECT redis_sync.write_through('a', key_prefix => 'db2:', warm => false)");
like($cl->holder('db2:'), $cl->held_by('postgres'), 'postgres now holds db2:');

# DROP EXTENSION and CREATE EXTENSION in one transaction: the new syncs'
# claims stay
sq('db5', q{
BEGIN;
DROP EXTENSION redis_sync CASCADE;
CREATE EXTENSION redis_sync;
SELECT redis_sync.write_through('t', key_prefix => 'db5:', warm => false);
COMMIT;
});
like($cl->holder('db5:'), $cl->held_by('db5'), 'DROP and CREATE EXTENSION in one transaction: the claim stays');

# DROP DATABASE leaves its claims in Redis; a database of this server that
# no longer exists holds nothing: its claim is taken over
my $db3 = $cl->db_oid('db3');
sq('postgres', 'DROP DATABASE db3');
like($cl->holder('db3:'), qr{^$sysid/$db3/}, 'after DROP DATABASE the claim is still in Redis');
sq('postgres', "CREATE TABLE b (id int PRIMARY KEY, v text);
                SELECT redis_sync.write_through('b', key_prefix => 'db3:', warm => false)");
like($cl->holder('db3:'), $cl->held_by('postgres'), "the dropped database's claim is taken over");

# the claim of another server is never taken for a dropped database's
$redis->cli('HSET', 'redis_sync:claims', 'p:other:', "1/$db3/1\tanother server's table");
($ret, $out, $err) =
  $node->psql('postgres', "SELECT redis_sync.write_through('b', key_prefix => 'other:', warm => false)");
like($err, qr/claimed by another server's table/, "another server's claim with that database OID is refused");

# Redis down at DROP EXTENSION: a warning that says what is left
$redis->stop;
($ret, $out, $err) = $node->psql('db4', 'DROP EXTENSION redis_sync CASCADE');
is($ret, 0, 'DROP EXTENSION commits with Redis down');
like($err, qr/WARNING:  could not release the key prefix claims of database "db4"/, '... with a warning');
like($err, qr/HINT:  Remove them with HDEL redis_sync:claims/, '... and a hint');

$node->stop;
$redis->stop;
done_testing();

# A new cluster (a pg_dump restore, pg_upgrade, a rebuilt server) writing
# the keys an older cluster wrote, on the same timeline, with a WAL position
# far below the old cluster's: its versions must still be newer.  Versions
# of the WAL position alone were fenced out until the new cluster's WAL
# passed the old one's; the server epoch (at least the start time in
# seconds, epoch.c) orders the new cluster after the old one.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $old = RedisSync::Test::new_node('oldcluster', redis => $redis);
$old->safe_psql('postgres', q{
CREATE TABLE u (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('u', key_prefix => 'u:');
});
# move the old cluster's WAL position 48 MB ahead
for (1 .. 3)
{
	$old->safe_psql('postgres',
		"SELECT pg_logical_emit_message(false, 'x', 'y'); SELECT pg_switch_wal()");
}
$old->safe_psql('postgres', "INSERT INTO u VALUES (1, 'old cluster')");
my $vkey = $old->safe_psql('postgres', "SELECT redis_sync.version_key('u:1')");
my $v_old = $redis->cli('GET', $vkey);
is($redis->cli('HGET', 'u:1', 'v'), 'old cluster', 'the old cluster wrote u:1');
my $epoch_file = $old->data_dir . '/redis_sync.epoch';
my $old_epoch = -f $epoch_file ? slurp_file($epoch_file) : 0;
chomp $old_epoch;
$old->stop;

# the new cluster starts in a later second than the old one did (its epoch
# is the start time); the old one's prefix claim is gone with it
select(undef, undef, undef, 0.1) while time() <= $old_epoch;
$redis->cli('DEL', 'redis_sync:claims');
my $new = RedisSync::Test::new_node('newcluster', redis => $redis);
my $lsn = $new->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
my ($hi, $lo) = split m{/}, $lsn;
my $pos_old = length($v_old) == 32 ? substr($v_old, 16) : substr($v_old, 8);
ok(sprintf('%08X%08X', hex($hi), hex($lo)) lt $pos_old,
	"the new cluster's WAL position ($lsn) is below the old cluster's version ($v_old)");
$new->safe_psql('postgres', q{
CREATE TABLE u (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('u', key_prefix => 'u:', warm => false);
INSERT INTO u VALUES (1, 'new cluster');
});
is($redis->cli('HGET', 'u:1', 'v'), 'new cluster', "the new cluster's write replaced the old cluster's value");
cmp_ok($redis->cli('GET', $vkey), 'gt', $v_old, '... with a newer version');
$new->safe_psql('postgres', "UPDATE u SET v = 'again' WHERE id = 1");
is($redis->cli('HGET', 'u:1', 'v'), 'again', 'later writes too');

$new->stop;
done_testing();

# Redis Cluster, write-behind: the slot of a table's dirty set (and of its
# processing set, which shares it) is migrated to another master while the
# worker applies a claimed batch (the table's code sleeps).  The batch's
# acknowledgement (SREM from the processing set) then meets MOVED and must
# follow it; a member made dirty again during the batch (on the new owner)
# is drained next.  After flush(): dirty and processing sets empty, every
# row holds its key's last value.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time sleep);

my $N = 500;
my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('clwbmove', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '2s'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(qq{
CREATE TABLE wbm (id int PRIMARY KEY, v bigint NOT NULL DEFAULT 0);
INSERT INTO wbm SELECT g, 0 FROM generate_series(1, $N) g;
SELECT redis_sync.write_behind('wbm', key_prefix => 'wbm:', flush_interval => '1 h');
CREATE TABLE ctl (slow bool NOT NULL);
INSERT INTO ctl VALUES (true);
});
sq(RedisSync::WB::sleep_trigger_sql('wbm', 6, '(SELECT slow FROM public.ctl) AND NEW.id = 1'));
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

my $any = $c->any_port;
for my $i (1 .. $N)
{
	$c->cli($any, 'HSET', "wbm:$i", 'v', 1000 + $i);
}
$c->cli($any, 'SADD', 'wbm:dirty', 1 .. $N);

my $slot = $c->node_cli($any, 'CLUSTER', 'KEYSLOT', 'wbm:dirty');
my ($src) = grep { $c->node_cli($_, 'TYPE', 'wbm:dirty') !~ /MOVED/ } $c->master_ports;
my ($dst) = grep { $_ != $src } $c->master_ports;
my ($src_id, $dst_id) = ($c->node_id($src), $c->node_id($dst));
note("dirty set slot $slot: $src -> $dst");

# a flush() in the background: the worker claims the batch and sleeps in it
my $bg = RedisSync::Test::session($node);
$bg->start_query("SELECT redis_sync.flush('wbm')");
ok(RedisSync::WB::worker_sleeping($node), 'the worker applies the batch (sleeping)');
is($c->node_cli($src, 'SCARD', '{wbm:dirty}:rs_processing'), $N, 'the batch is in the processing set');

# migrate the slot, keys and all, to $dst
is($c->node_cli($dst, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $src_id), 'OK', 'importing');
is($c->node_cli($src, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $dst_id), 'OK', 'migrating');
my @keys = split /\n/, $c->node_cli($src, 'CLUSTER', 'GETKEYSINSLOT', $slot, 1000);
note("keys in the slot: @keys");
is($c->node_cli($src, 'MIGRATE', '127.0.0.1', $dst, '', 0, 5000, 'KEYS', @keys), 'OK', 'keys migrated') if @keys;
for my $p ($dst, $src, grep { $_ != $src && $_ != $dst } $c->master_ports)
{
	$c->node_cli($p, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $dst_id);
}
$c->wait_ok;
is($c->node_cli($dst, 'SCARD', '{wbm:dirty}:rs_processing'), $N, 'the processing set moved to the new owner');

# member 7 changes again during the batch
$c->cli($any, 'HSET', 'wbm:7', 'v', 999999);
$c->cli($any, 'SADD', 'wbm:dirty', 7);

sq("UPDATE ctl SET slow = false");
my $r = $bg->finish_query;
note("background flush: " . ($r->{out} // '') . " err: " . ($r->{err} // ''));

my ($secs) = RedisSync::WB::flush_until_clean($node, $c->node($dst), table => 'wbm', dirty => 'wbm:dirty', timeout => 60);
ok(defined $secs, 'dirty and processing sets drained after the move');
is($c->cli($any, 'SCARD', 'wbm:dirty') . '/' . $c->cli($any, 'SCARD', '{wbm:dirty}:rs_processing'), '0/0',
	'dirty and processing sets empty');
is(sq("SELECT count(*) FROM wbm WHERE v <> 1000 + id AND id <> 7"), '0', 'every row holds its key\'s value');
is(sq("SELECT v FROM wbm WHERE id = 7"), '999999', 'the member changed during the batch holds its last value');
is(sq("SELECT count(*) FROM redis_sync.verify('wbm')"), '0', 'verify() clean');
$bg->quit;
$node->stop;
done_testing();

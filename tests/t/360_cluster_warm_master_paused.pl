# Redis Cluster: a background warm (write_through(warm => true)) and a
# foreground warm() run while one master is frozen (CLIENT PAUSE ALL, longer
# than command_timeout, shorter than the node timeout: no failover), with
# pgbench writers on the table.  The foreground warm() fails with a clear
# error within its timeouts; the background warm shows the failure in
# redis_sync.warming and retries; once the master answers again everything
# converges: the warm is done and verify() is clean.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::ClusterLoad qw();
use Test::More;
use IPC::Run ();
use Time::HiRes qw(time sleep);

my $ROWS = 60000;
my ($c, $node) = RedisSync::ClusterLoad::cluster_and_node('clwarm', node_timeout => 15000,
	extra_conf => "redis_sync.command_timeout = '1s'\nredis_sync.connect_timeout = '1s'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(qq{
CREATE TABLE w (id int PRIMARY KEY, v bigint NOT NULL, pad text);
INSERT INTO w SELECT g, 0, repeat('x', 200) FROM generate_series(1, $ROWS) g;
CREATE TABLE f (id int PRIMARY KEY, v bigint NOT NULL);
INSERT INTO f SELECT g, 0 FROM generate_series(1, $ROWS) g;
SELECT redis_sync.write_through('f', key_prefix => 'f:', warm => false);
});

my $script = RedisSync::ClusterLoad::pgbench_script('clwarm',
	"\\set id random(1, $ROWS)\nUPDATE w SET v = v + 1 WHERE id = :id;\nUPDATE f SET v = v + 1 WHERE id = :id;\n");
my $job = RedisSync::ClusterLoad::start_pgbench($node, $script, 2, 12);
RedisSync::ClusterLoad::wait_connected($node, 'UPDATE %', 2);

sq("SELECT redis_sync.write_through('w', key_prefix => 'w:', warm => true)");
my $victim = ($c->master_ports)[1];
is($c->node_cli($victim, 'CLIENT', 'PAUSE', 4000, 'ALL'), 'OK', "master $victim paused for 4 s");
my $t0 = time;
my ($ret, $out, $err) = $node->psql('postgres', "SELECT redis_sync.warm('f')");
my $took = time - $t0;
note("warm(f) during the freeze: ret $ret, $out, $err, ${took}s");
isnt($ret, 0, 'foreground warm() fails while the master is paused');
like($err, qr/127\.0\.0\.1:$victim/, 'its error names the paused master');
cmp_ok($took, '<', 8, 'and does not hang past its timeouts');

RedisSync::ClusterLoad::finish_pgbench($job, 'load');
RedisSync::ClusterLoad::poll_until('background warm done', sub {
	sq(q{SELECT state FROM redis_sync.warming WHERE "table" = 'w'::regclass}) eq 'done';
}, 120);
note(sq(q{SELECT row_to_json(x) FROM redis_sync.warming x}));
is(sq("SELECT redis_sync.warm('f') >= 0"), 't', 'warm(f) works again');
RedisSync::ClusterLoad::poll_until('outbox delivered', sub {
	$node->psql('postgres', 'SELECT redis_sync.flush()') == 0
	  && sq("SELECT count(*) FROM redis_sync.outbox") eq '0';
});
is(sq("SELECT count(*) FROM redis_sync.verify('w')"), '0', 'w: verify() clean after the freeze');
is(sq("SELECT count(*) FROM redis_sync.verify('f')"), '0', 'f: verify() clean after the freeze');
$node->stop;
done_testing();

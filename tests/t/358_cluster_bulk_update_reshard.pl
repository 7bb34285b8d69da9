# Redis Cluster: bulk UPDATEs of 50,000 rows of a write-through table and
# of an invalidate table (its keys cached by get()) run while
# redis-cli --cluster reshard moves 2,000 slots between masters (ASK while
# each slot migrates, MOVED after).  No statement fails (eventual); after
# flush(): verify() of the write-through table is clean, and no get() of
# the invalidate table returns a stale cached row.
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

my $ROWS = 50000;
my $INV  = 5000;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('clbulk', redis_url => $c->url,
	extra_conf => "redis_sync.command_timeout = '5s'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(qq{
CREATE TABLE wt (id int PRIMARY KEY, v bigint NOT NULL, note text);
SELECT redis_sync.write_through('wt', key_prefix => 'wt:', warm => false);
INSERT INTO wt SELECT g, 0, 'init' FROM generate_series(1, $ROWS) g;
CREATE TABLE inv (id int PRIMARY KEY, v bigint NOT NULL);
SELECT redis_sync.invalidate('inv', key_prefix => 'inv:');
INSERT INTO inv SELECT g, 0 FROM generate_series(1, $INV) g;
});
is(sq("SELECT count(*) FROM redis_sync.verify('wt')"), '0', 'wt: cache == table before');
sq("SELECT count(*) FROM generate_series(1, $INV) g, LATERAL redis_sync.get(NULL::inv, g::text) r");
cmp_ok($c->dbsize, '>=', $ROWS + $INV, 'inv rows cached by get()');

my @m = $c->master_ports;
my ($from, $to) = @m[0, 1];
my ($rs_out, $rs_err) = ('', '');
my $rs = IPC::Run::start(
	[
		RedisSync::Test::redis_cli_bin(), '--cluster', 'reshard', "127.0.0.1:$from",
		'--cluster-from', $c->node_id($from), '--cluster-to', $c->node_id($to),
		'--cluster-slots', 2000, '--cluster-yes', '--cluster-pipeline', 50
	],
	'<', \undef, '>', \$rs_out, '2>', \$rs_err, IPC::Run::timeout(300));

my ($rounds, $errors) = (0, '');
my $s = RedisSync::Test::session($node);
while ($rs->pumpable || $rounds < 2)
{
	$rounds++;
	my $r = $s->query("UPDATE wt SET v = v + 1, note = 'r$rounds'");
	$errors .= $r->{err};
	$r = $s->query("UPDATE inv SET v = v + 1");
	$errors .= $r->{err};
	$rs->pump_nb;
	last if $rounds > 40;
}
ok($rs->finish, 'reshard of 2000 slots finished') or diag("$rs_out\n$rs_err");
note("$rounds rounds of bulk updates during the reshard");
is($errors, '', 'no bulk UPDATE failed');
$c->wait_ok;

RedisSync::ClusterLoad::poll_until('outbox delivered', sub {
	$node->psql('postgres', 'SELECT redis_sync.flush()') == 0
	  && sq("SELECT count(*) FROM redis_sync.outbox") eq '0';
});
is(sq("SELECT count(*) FROM redis_sync.verify('wt')"), '0', 'wt: verify() clean after the reshard');
is(sq("SELECT count(*) FROM inv i WHERE (SELECT r.v FROM redis_sync.get(NULL::inv, i.id::text) r) IS DISTINCT FROM i.v"),
	'0', 'inv: no get() returns a stale row');
$s->quit;
$node->stop;
done_testing();

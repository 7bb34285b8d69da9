# The worker's refresh after a Redis restart, one SCAN pass for every
# write-through and invalidate table (keys_sql.c rs_refresh_cached_keys,
# fence.c rs_scan_prefixes_pages), on a 3-master Redis Cluster whose nodes
# all restart from their snapshots: the pass visits every master, each key
# goes to the table whose prefix it starts with (prefixes next to one
# another, sharing a beginning, holding glob characters), and every table
# ends up with its current rows.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(sleep time);

my $c    = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('cluster_refresh', redis_url => $c->url);

my @prefixes = ('a:', 'ab:', 'p:1:', 'p:2:', 'g*[x]:');
my @tables   = map { "t$_" } 1 .. scalar @prefixes;
my $sql      = '';
for my $i (0 .. $#prefixes)
{
	$sql .= "CREATE TABLE $tables[$i] (id int PRIMARY KEY, v text);
INSERT INTO $tables[$i] SELECT g, 'old ' || g FROM generate_series(1, 300) g;
SELECT redis_sync.write_through('$tables[$i]', key_prefix => '$prefixes[$i]', warm => false);
SELECT redis_sync.warm('$tables[$i]');
";
}
$node->safe_psql('postgres', $sql);
is($c->any_cli('HGET', 'g*[x]:7', 'v'), 'old 7', 'the tables are cached');
my @masters = $c->master_ports;
is(scalar @masters, 3, '3 masters');
is($c->node_cli($_, 'SAVE'), 'OK', "master $_: snapshot taken") for @masters;
my $changes = '';
$changes .= "UPDATE $_ SET v = 'new ' || id WHERE id <= 50; DELETE FROM $_ WHERE id > 250;\n" for @tables;
$node->safe_psql('postgres', $changes);
is($c->any_cli('HGET', 'p:2:1', 'v'), 'new 1', 'the updates reached Redis');

my $offset = -s $node->logfile;
# the worker paused: it sees the restarted cluster only once resumed
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$c->node($_)->stop for $c->ports;
$c->node($_)->start for $c->ports;
$c->wait_ok;
is($c->any_cli('HGET', 'p:2:1', 'v'), 'old 1', 'the cluster is back with its snapshots');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
my $done = RedisSync::Compare::wait_for(sub {
		my @r = substr(slurp_file($node->logfile), $offset) =~ /re-warmed \d+ keys of table/g;
		return @r >= scalar @tables }, 120);
ok(defined $done, 'every table is refreshed and re-warmed')
  or diag(join("\n", grep { /redis_sync worker/ } split /\n/, substr(slurp_file($node->logfile), $offset)));
my $log = substr(slurp_file($node->logfile), $offset);
my @refreshed = $log =~ /refreshed (\d+) cached keys of table/g;
is(join(',', @refreshed), join(',', (300) x @tables), 'each table refreshed the 300 keys the snapshots held of it');
for my $i (0 .. $#tables)
{
	my ($t, $p) = ($tables[$i], $prefixes[$i]);
	is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('$t')"), '0', "$t ($p): cache == table");
	is($c->any_cli('HGET', "${p}1", 'v'), 'new 1', "$t: a stale key is pushed again");
	is($c->any_cli('EXISTS', "${p}260"), '0', "$t: a deleted row's key is gone");
}

done_testing();

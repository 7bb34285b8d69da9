# Redis Cluster with a Redis 7 ACL user that may not run @dangerous commands
# (a common least-privilege setup: INFO is @dangerous).  Cluster mode must
# still be detected (INFO refused: CLUSTER INFO tells), so pushes are routed
# by slot instead of failing with MOVED / CROSSSLOT as on a single Redis.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my @masters = $c->master_ports;
is(scalar(@masters), 3, 'three masters');

# one node, no redirection following
sub ncli { return $c->node_cli(@_); }

for my $p (@masters)
{
	is(ncli($p, 'ACL', 'SETUSER', 'app', 'on', '>apppw', '~*', '&*', '+@all', '-@dangerous'),
		'OK', "ACL user app on $p");
}
like(ncli($masters[0], '--user', 'app', '--pass', 'apppw', '--no-auth-warning', 'INFO', 'cluster'),
	qr/NOPERM/, 'the user may not run INFO');

my $url = 'redis://app:apppw@' . join(',', map { "127.0.0.1:$_" } @masters) . '/0';
my $node = RedisSync::Test::new_node('clacl', redis_url => $url);

sub sq { return $node->safe_psql('postgres', $_[0]); }

is(sq("SELECT count(*) FROM redis_sync.cluster_nodes() WHERE role = 'master'"), '3',
	'cluster detected without INFO');
sq(q{
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('t', key_prefix => 't:', consistency => 'strict', warm => false);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;
UPDATE t SET v = v || 'x' WHERE id <= 50;
});
my $n = 0;
$n += ncli($_, 'DBSIZE') > 0 ? 1 : 0 for @masters;
is($n, 3, 'keys on every master');
is($c->any_cli('HGET', 't:7', 'v'), 'v7x', 'strict push routed by slot');
is(sq("SELECT count(*) FROM redis_sync.verify('t')"), '0', 'verify() clean');
sq("TRUNCATE t");
is($c->any_cli('EXISTS', 't:7'), '0', 'TRUNCATE purged every master');

done_testing();

# Redis Cluster: a backend notes the slots each of its in-flight markers
# was written to (fence_cluster.c), so that its next push can clear the
# markers of its committed transactions there.  The note holds at most
# 10,000 markers.  Markers no push of the backend would clear stayed
# noted for the life of the backend: those of a transaction that rolled
# back after its push (left to the worker, which repairs their rows).
# Once 10,000 were noted, the markers of later commits were not, their
# clears found no slot, and every one of them was left to the worker's
# sweep (helper-112).  The note of a marker now goes when its transaction
# ends without a push of the backend to clear it.
#
# Here one transaction of 10,001 keys in chunks of 1 (10,001 markers, more
# than an abort restores itself) fails at commit, after its push, on a
# serialization failure; the worker repairs its keys.  The same backend
# then commits an UPDATE and makes another push to the same slot: that
# push must clear the committed UPDATE's marker (the worker's sweep is an
# hour away).  The same after a prepared transaction of 10,001 keys.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::Compare;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('clmarkslots', redis_url => $c->url,
	extra_conf => "redis_sync.marker_sweep_interval = '1h'\nmax_prepared_transactions = 2\n");
sub sq  { return $node->safe_psql('postgres', $_[0]); }
sub cli { return $c->any_cli(@_); }

my $rows = 10001;
sq(qq{
CREATE TABLE t (id int PRIMARY KEY, v int);
INSERT INTO t SELECT g, 1 FROM generate_series(1, $rows) g;
CREATE TABLE other (id int PRIMARY KEY, v int);
INSERT INTO other VALUES (1, 1);
SELECT redis_sync.write_through('t', key_prefix => 't:', warm => false);
SELECT redis_sync.warm('t');
});
is(sq(q{SELECT count(*) FROM redis_sync.verify('t')}), '0', 't cached');
my $base = sq("SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()");

# marker hashes left on the masters (SCAN of each)
sub marker_hashes
{
	my $n = 0;
	for my $p ($c->master_ports)
	{
		$n += grep { !/:(failed|attempts)$/ } split /\n/,
		  $c->node_cli($p, '--scan', '--pattern', "$base:*");
	}
	return $n;
}
# the fields of every marker hash
sub marker_fields
{
	my @f;
	for my $p ($c->master_ports)
	{
		for my $k (grep { !/:(failed|attempts)$/ } split /\n/,
			$c->node_cli($p, '--scan', '--pattern', "$base:*"))
		{
			push @f, split /\n/, $c->node_cli($p, 'HKEYS', $k);
		}
	}
	return @f;
}
is(marker_hashes(), 0, 'no in-flight marker yet');

# a write skew: s reads other and writes t; another transaction reads t and
# writes other, and commits first.  s is then a pivot, and fails at commit,
# after its push (PostgreSQL checks for it after the pre-commit callbacks)
my $s = RedisSync::Test::session($node);
$s->query(q{SET redis_sync.chunk_size = 1});
my $r = RedisSync::Test::fail_at_commit_after_push($node, $s, q{UPDATE t SET v = 2},
	q{SELECT v FROM t WHERE id = 1}, 'other');
like($r->{err}, qr/could not serialize access/, 'the transaction of 10,001 keys fails at commit');

# the worker repairs the 10,001 markers (the abort asked it to sweep) and
# removes them
my $ok = RedisSync::Compare::wait_for(sub { marker_hashes() == 0 }, 180, 0.5);
ok(defined $ok, 'the worker repaired and removed the markers of the transaction that rolled back');
is(sq(q{SELECT count(*) FROM redis_sync.verify('t')}), '0', 'cache == table');

# the same backend commits an UPDATE of t:1, and pushes t:1 again: that
# push goes to the node of the marker and clears it
$s->query(q{BEGIN});
$s->query(q{UPDATE t SET v = 3 WHERE id = 1});
my $xid = $s->query(q{SELECT txid_current()})->{out};
$s->query(q{COMMIT});
like(join("\n", marker_fields()), qr/^\Q$xid\E:/m, "the committed UPDATE's marker is in Redis");
$s->query(q{UPDATE t SET v = 4 WHERE id = 1});
unlike(join("\n", marker_fields()), qr/^\Q$xid\E:/m, "the backend's next push cleared it");
is(cli('HGET', 't:1', 'v'), '4', 't:1 has the last UPDATE');

# a prepared transaction's markers are not the backend's to clear either
# (its commit is another transaction's: the worker's sweep removes them)
$s->query(q{BEGIN});
$s->query(q{UPDATE t SET v = 5});
$s->query(q{PREPARE TRANSACTION 'big'});
sq(q{COMMIT PREPARED 'big'});
is(cli('HGET', 't:2', 'v'), '5', 'the prepared UPDATE of 10,001 keys is pushed');
$s->query(q{BEGIN});
$s->query(q{UPDATE t SET v = 6 WHERE id = 1});
$xid = $s->query(q{SELECT txid_current()})->{out};
$s->query(q{COMMIT});
like(join("\n", marker_fields()), qr/^\Q$xid\E:/m, "the next committed UPDATE's marker is in Redis");
$s->query(q{UPDATE t SET v = 7 WHERE id = 1});
unlike(join("\n", marker_fields()), qr/^\Q$xid\E:/m,
	"the backend's next push cleared it (10,001 markers of the prepared transaction before)");

$s->quit;
$node->stop;
done_testing();

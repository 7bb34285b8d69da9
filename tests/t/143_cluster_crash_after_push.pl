# Redis Cluster: a backend dies right after its pre-commit push reached
# Redis (three masters) and before its commit record was written
# (redis_sync.debug_crash_after_push).  The push wrote in-flight markers on
# every master it reached, in the same atomic calls as the keys; after the
# crash restart the worker's sweep finds them, sees the transaction did not
# commit, and pushes the committed rows again: verify() is clean, the
# crashed values are gone from every master, and no marker is left.
# (The crashed transaction's WAL is switched out before its commit: see
# below.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use Test::More;
use Time::HiRes qw(time sleep);

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('clcrash', redis_url => $c->url,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\nrestart_after_crash = on\n");

RedisSync::Test::skip_unless_crash_injection($node);
my ($ret, $out, $err);

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub poll_until
{
	my ($what, $cond, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	while (time < $deadline)
	{
		my $ok = eval { $cond->() };
		return 1 if $ok;
		sleep 0.2;
	}
	fail("timed out waiting for $what");
	return 0;
}

sq(q{
CREATE TABLE e (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('e', key_prefix => 'e:', warm => false);
INSERT INTO e SELECT g, g, 'e' || g FROM generate_series(1, 200) g;
});
is(sq("SELECT count(*) FROM redis_sync.verify('e')"), '0', 'cached');

($ret, $out, $err) = $node->psql('postgres', q{
SET redis_sync.debug_crash_after_push = on;
BEGIN;
UPDATE e SET note = 'crashed' WHERE id <= 100;
DELETE FROM e WHERE id > 190;
INSERT INTO e VALUES (500, 500, 'crashed');
COMMIT;
});
isnt($ret, 0, 'the backend died at commit');

# the crashed values reached every master before the crash
poll_until('server back', sub { sq('SELECT 1') eq '1' });
poll_until('repaired', sub {
	sq("SELECT count(*) FROM redis_sync.verify('e')") eq '0';
});
is(sq("SELECT count(*) FROM redis_sync.verify('e')"), '0', 'after the sweep: every row equals its key')
  or diag(sq("SELECT key, problem, table_value, cache_value FROM redis_sync.verify('e') LIMIT 5"));
is($c->any_cli('HGET', 'e:5', 'note'), 'e5', 'an updated row is back to its committed value');
is($c->any_cli('HGET', 'e:195', 'note'), 'e195', 'a deleted row is back');
is($c->any_cli('EXISTS', 'e:500'), '0', 'an inserted row is gone');
like(slurp_file($node->logfile), qr/repaired \d+ keys pushed by transaction \d+, which did not commit/,
	'the worker logged the repair');
poll_until('markers swept', sub {
	my $n = 0;
	for my $m ($c->master_ports)
	{
		$n += grep { /inflight/ && !/attempts|failed/ && $c->cli($m, 'HLEN', $_) > 0 }
		  grep { length } split /\n/, $c->node($m)->cli('--scan', '--pattern', 'redis_sync:inflight:*');
	}
	$n == 0;
});
pass('no in-flight marker left');

$node->stop;
done_testing();

# max_worker_processes too small for the workers: databases without the
# extension (which the launcher would only probe) cause no log lines; a
# database with the extension is logged once, worker_stats says why, and
# flush() there fails at once with the reason instead of waiting.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
# the launcher, the logical replication launcher, the worker of postgres
my $node  = RedisSync::Test::new_node('fewbgw', redis => $redis,
	extra_conf => "max_worker_processes = 3\nredis_sync.max_workers = 4\n");

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }

ok(defined RedisSync::Compare::wait_for(
		sub { sql('postgres', "SELECT worker_running FROM redis_sync.worker_stats WHERE database = 'postgres'") eq 't' }, 30),
	'postgres: worker running');
sql('postgres', "CREATE DATABASE plain$_") for 1 .. 3;
sql('postgres', 'CREATE DATABASE full1');
sql('full1', q{
CREATE EXTENSION redis_sync;
CREATE TABLE w (id int PRIMARY KEY, n bigint);
SELECT redis_sync.write_behind('w', key_prefix => 'f:w:');
});
ok(defined RedisSync::Compare::wait_for(
		sub { sql('full1', "SELECT worker_state FROM redis_sync.worker_stats WHERE database = 'full1'") eq 'no worker: max_worker_processes reached' }, 30),
	'full1: worker_stats says max_worker_processes is reached');
my ($ret, $out, $err) = $node->psql('full1', q{SET redis_sync.flush_timeout = '60s'; SELECT redis_sync.flush('w')});
like($err, qr/no redis_sync background worker runs in database "full1": max_worker_processes reached/,
	'flush() there fails with the reason');
sleep 12;    # observation window: a scan (every 10 s) probes plain1..3 again
my $log = slurp_file($node->logfile);
my $n = () = $log =~ /could not start a worker for database "full1"/g;
is($n, 1, 'full1 is logged once');
unlike($log, qr/could not start a worker for database "plain/, 'databases without the extension are not logged');
$node->stop;
done_testing();

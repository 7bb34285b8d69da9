# The worker runs only on a primary: a hot standby has none (and its
# redis_sync tables, replicated, are not acted on); after promotion the
# worker starts and delivers what the new primary queues.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis   = RedisSync::Test::start_redis();
my $primary = RedisSync::Test::new_node('primary', redis => $redis,
	extra_conf => "wal_level = replica\nmax_wal_senders = 4\n");
$primary->safe_psql('postgres', q{
	CREATE TABLE t (id int PRIMARY KEY, v text);
	SELECT redis_sync.write_through('t', key_prefix => 't:', delivery => 'async');
	INSERT INTO t VALUES (1, 'one');
});
$primary->backup('b');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

my $workers = q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'};
is($primary->safe_psql('postgres', $workers), '1', 'the primary runs the worker');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is($standby->safe_psql('postgres', $workers), '0', 'the standby runs no worker');

# the primary goes away; the standby is promoted and takes over delivery
$primary->stop('immediate');
$standby->promote;
ok($standby->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'}),
	'after promotion the worker starts');

$standby->safe_psql('postgres', q{UPDATE t SET v = 'after promotion' WHERE id = 1});
ok($standby->poll_query_until('postgres', 'SELECT count(*) = 0 FROM redis_sync.outbox'),
	'the promoted server delivers its outbox');
is($redis->cli('HGET', 't:1', 'v'), 'after promotion', 'Redis has the change made after promotion');

$standby->stop;
done_testing();

# A database that still has the extension at version 0.1 (the library was
# upgraded, ALTER EXTENSION UPDATE not run yet): the launcher finds it and
# its worker must not crash or spin on 0.1 objects; after ALTER EXTENSION
# UPDATE the database is served as usual.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('oldver', redis => $redis,
	extra_conf => "redis_sync.naptime = '200ms'\n");

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }

sql('postgres', 'CREATE DATABASE old');
sql('old', q{
CREATE EXTENSION redis_sync VERSION '0.1';
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE w (id int PRIMARY KEY, n bigint);
});
# 0.1's own check names the one worker database (redis_sync.database, now
# empty by default): async and write-behind tables wait for the update
my ($ret, $out, $err) = $node->psql('old', q{
SELECT redis_sync.write_through('a', key_prefix => 'old:a:', delivery => 'async');
});
isnt($ret, 0, '0.1 objects: async delivery is refused until ALTER EXTENSION UPDATE');
sql('old', q{SELECT redis_sync.write_through('w', key_prefix => 'old:w:')});

# the scan (every 10 s) probes the database; let the worker run a while
my $pids = sub {
	return sql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'redis_sync worker' AND datname = 'old'");
};
ok(defined RedisSync::Compare::wait_for(sub { $pids->() ne '' }, 40), 'a worker runs in the 0.1 database');
my $first = $pids->();
sql('old', "INSERT INTO w VALUES (1, 1)");
is($redis->cli('HGET', 'old:w:1', 'n'), '1', '0.1 write-through works with the 0.2 library');
sleep 3;    # observation window: the worker must stay up (no crash loop)
is($pids->(), $first, 'the worker of the 0.1 database stays up (same pid after 3 s)');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no crash');
my ($wpid) = split /,/, $first;
unlike($log, qr/\[$wpid\] (ERROR|WARNING|FATAL)/, 'the worker of the 0.1 database logs no error');

sql('old', 'ALTER EXTENSION redis_sync UPDATE');
is(sql('old', "SELECT extversion FROM pg_extension WHERE extname = 'redis_sync'"), '0.2', 'updated');
{
	sql('old', q{SELECT redis_sync.write_through('a', key_prefix => 'old:a:', delivery => 'async')});
	sql('old', "INSERT INTO a VALUES (2, 'two')");
	ok(defined RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'old:a:2', 'v') // '') eq 'two' }, 30),
		'after the update the async table is delivered');
}
$node->stop;
done_testing();

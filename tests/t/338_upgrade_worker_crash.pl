# The database's worker while a 0.1 install with write-behind and
# write-through tables is updated to 0.2 (ALTER EXTENSION redis_sync UPDATE),
# as sql/upgrade does.
#
# Found by the adversarial review: the regress suite's upgrade test failed
# once in three runs with "background worker "redis_sync worker" was
# terminated by signal 11: Segmentation fault" (the worker was "delivering
# the outbox"), which restarts the whole server.  Repeating the steps below
# crashed the worker 8 times in 25 rounds, and a database left at 0.1 with
# such tables made the server restart in a loop (46 crashes in seconds).
#
# The cause: the rows inserted by hand leave flush_interval, batch_size and
# on_missing NULL (redis_sync.tables allows it; write_behind() never does),
# and the worker's list of write-behind tables read on_missing with
# text_to_cstring() of a NULL.  Expected: no server process ever dies of a
# signal (NULLs take write_behind()'s defaults).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
# the test cluster's restart_after_crash is off: turned on, so that a
# crash is counted in the log rather than ending the server
my $node = RedisSync::Test::new_node('upgrade_crash', redis => $redis,
	extra_conf => "restart_after_crash = on\n");

for my $round (1 .. 12)
{
	$node->psql('postgres', q{
SET client_min_messages = error;
DROP EXTENSION IF EXISTS redis_sync CASCADE;
DROP TABLE IF EXISTS up_inv, up_cols, up_ok;
CREATE EXTENSION redis_sync VERSION '0.1';
CREATE TABLE up_inv (id int PRIMARY KEY, n int, label text);
CREATE TABLE up_cols (id int PRIMARY KEY, n int, label text);
CREATE TABLE up_ok (id int PRIMARY KEY, n int, label text);
INSERT INTO redis_sync.tables (relid, policy, key_prefix, key_columns, columns, format, dirty_set)
VALUES ('up_inv', 'write_behind', 'upi:', '{id}', '{n}', 'hash', 'upi:dirty'),
       ('up_inv', 'invalidate', 'upi:', '{id}', '{id,n,label}', 'hash', NULL),
       ('up_cols', 'write_behind', 'upc:', '{id}', '{n}', 'hash', 'upc:dirty'),
       ('up_cols', 'write_through', 'upc:', '{id}', '{id,n,label}', 'hash', NULL),
       ('up_ok', 'write_behind', 'upo:', '{id}', '{n}', 'hash', 'upo:dirty'),
       ('up_ok', 'write_through', 'upo:', '{id}', '{id,label}', 'hash', NULL);
ALTER EXTENSION redis_sync UPDATE;
SELECT pg_sleep(0.3);
});
	# wait until the server accepts connections again, if it restarted
	eval { $node->poll_query_until('postgres', 'SELECT 1', '1') };
	eval { $node->poll_query_until('postgres', 'SELECT 1', '1') } if $@;
}

my $log = slurp_file($node->logfile);
my $crashes = () = $log =~ /terminated by signal/g;
is($crashes, 0, 'no server process died of a signal while 0.1 was updated')
	or diag(join("\n", grep { /terminated by signal|Failed process/ } split /\n/, $log));
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'redis_sync'}),
	'0.2', 'the extension is at 0.2');

done_testing();

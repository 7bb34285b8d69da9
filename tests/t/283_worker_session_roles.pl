# The worker's drain writes a write-behind table as any client does, with
# its triggers and foreign keys, and as the table owner under the policies
# that apply to the owner, whatever the database or the worker's role set
# for client sessions (worker.c, redis_sync_worker_main):
#   - ALTER DATABASE ... SET session_replication_role = replica made the
#     drain skip ordinary triggers and the foreign-key checks: a row whose
#     parent did not exist was inserted (it is a dead letter otherwise) and
#     a BEFORE trigger did not run;
#   - ALTER ROLE <the worker's role> SET row_security = off (pg_dump's
#     setting) made every change drained into a FORCE ROW LEVEL SECURITY
#     table a dead letter ("query would be affected by row-level security
#     policy"), although the owner's policy allowed it.
# 5 of these 7 checks failed before.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use RedisSync::Compare;
use Test::More;

# the test's own sessions keep the defaults
$ENV{PGOPTIONS} = '-c session_replication_role=origin -c row_security=on';

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('worker_roles', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE par (id int PRIMARY KEY);
INSERT INTO par VALUES (1);
CREATE TABLE ch (id int PRIMARY KEY, par int REFERENCES par, note text, touched bool DEFAULT false);
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql
  AS $$BEGIN NEW.touched := true; RETURN NEW; END$$;
CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON ch FOR EACH ROW EXECUTE FUNCTION public.touch();
SELECT redis_sync.write_behind('ch', key_prefix => 'ch:', dirty_set => 'ch-dirty',
                               flush_interval => '100 ms');
CREATE ROLE alice;
CREATE TABLE rls (id int PRIMARY KEY, v text);
ALTER TABLE rls OWNER TO alice;
ALTER TABLE rls ENABLE ROW LEVEL SECURITY;
ALTER TABLE rls FORCE ROW LEVEL SECURITY;
CREATE POLICY everything ON rls USING (true);
SELECT redis_sync.write_behind('rls', key_prefix => 'rls:', dirty_set => 'rls-dirty',
                               flush_interval => '100 ms');
ALTER DATABASE postgres SET session_replication_role = replica;
ALTER ROLE CURRENT_USER SET row_security = off;
});

# a new worker, which reads the settings at its start
ok(defined RedisSync::WB::restart_worker($node),
	'a new worker started under the settings');

sub wait_q
{
	my ($sql, $want) = @_;
	return defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', $sql) eq $want }, 30);
}

# session_replication_role: the foreign key and the trigger apply
$redis->cli('HSET', 'ch:1', 'par', '1', 'note', 'fine');
$redis->cli('HSET', 'ch:2', 'par', '99', 'note', 'orphan');
$redis->cli('SADD', 'ch-dirty', '1', '2');
ok(wait_q(q{SELECT count(*) FROM redis_sync.dead_letters WHERE relid = 'ch'::regclass AND member = '2'}, '1'),
	'a row without its parent is a dead letter');
is($node->safe_psql('postgres', q{SELECT string_agg(id || ':' || note || ':' || touched, ',' ORDER BY id) FROM ch}),
	'1:fine:true', 'the orphan is not in the table, and the trigger ran');
like($node->safe_psql('postgres', q{SELECT error FROM redis_sync.dead_letters WHERE relid = 'ch'::regclass}),
	qr/violates foreign key constraint/, 'the dead letter says why');

# row_security: the owner's policy applies, the change is applied
$redis->cli('HSET', 'rls:1', 'v', 'a');
$redis->cli('SADD', 'rls-dirty', '1');
ok(wait_q(q{SELECT v FROM rls WHERE id = 1}, 'a'), 'a change is drained into a FORCE ROW LEVEL SECURITY table');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.dead_letters WHERE relid = 'rls'::regclass}),
	'0', 'no dead letter for it');

# client sessions keep what the database and role set
{
	local $ENV{PGOPTIONS} = '';
	is($node->safe_psql('postgres', 'SHOW session_replication_role') . ' '
		  . $node->safe_psql('postgres', 'SHOW row_security'),
		'replica off', 'client sessions keep the database\'s and the role\'s settings');
}

done_testing();

# get()'s own read of the row (the caller's SELECT: on a miss after the
# populate, and under row-level security) is SQL redis_sync composes, run
# in the caller's session with the caller's search_path.  Its key
# comparison was a bare '=': for a varchar key, pg_catalog has no
# =(varchar, varchar), so an operator of that exact signature planted in a
# schema on the path won, and ran with the rights of whoever called get():
# through alice's SECURITY DEFINER function, as alice.  The capture's
# configuration load is protected against exactly this (sql/security,
# planted_function_calls); get()'s read must be too.  (From an adversarial
# review.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('get_search_path', redis => $redis);
$node->safe_psql('postgres', q{
CREATE ROLE alice; CREATE ROLE mallory;
CREATE SCHEMA evil AUTHORIZATION mallory; CREATE SCHEMA app AUTHORIZATION alice; GRANT USAGE ON SCHEMA app TO mallory;
CREATE TABLE trace (who text); GRANT INSERT ON trace TO PUBLIC;
CREATE TABLE vk (id varchar(10) PRIMARY KEY, secret text);
INSERT INTO vk VALUES ('k1', 'alice secret'), ('k2', 'other secret');
ALTER TABLE vk OWNER TO alice;
SET ROLE alice;
SELECT redis_sync.write_through('vk', key_prefix => 'vk:', warm => false);
CREATE FUNCTION app.lookup(k text) RETURNS text LANGUAGE sql SECURITY DEFINER
  AS $$ SELECT (redis_sync.get(NULL::public.vk, k)).secret $$;
GRANT EXECUTE ON FUNCTION app.lookup(text) TO mallory;
RESET ROLE;
SET ROLE mallory;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.eq(varchar, varchar) RETURNS boolean LANGUAGE sql
  AS $$ INSERT INTO public.trace SELECT current_user; SELECT $1::text OPERATOR(pg_catalog.=) $2::text $$;
CREATE OPERATOR evil.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = evil.eq);
});

# a miss (the worker may have filled the key meanwhile)
$redis->cli('DEL', 'vk:k1');
my $out = $node->safe_psql('postgres',
	q{SET ROLE mallory; SET search_path = evil, public; SELECT app.lookup('k1')});
is($out, 'alice secret', 'lookup() answers (a miss, populated)');
like($redis->cli('HGET', 'vk:k1', 'secret'), qr/alice secret/, 'the key was populated');
is($node->safe_psql('postgres', 'SELECT count(*) FROM trace'), '0',
	'no operator planted in the caller\'s search_path ran in get()\'s read');
is($node->safe_psql('postgres', q{SELECT coalesce(string_agg(who, ','), '') FROM trace}), '',
	'in particular not as alice');

# under row-level security get() reads the row on a hit too
$node->safe_psql('postgres', q{
SET ROLE alice;
ALTER TABLE vk ENABLE ROW LEVEL SECURITY; ALTER TABLE vk FORCE ROW LEVEL SECURITY;
CREATE POLICY all_rows ON vk USING (true);
});
$out = $node->safe_psql('postgres',
	q{SET ROLE mallory; SET search_path = evil, public; SELECT app.lookup('k1')});
is($out, 'alice secret', 'lookup() answers (a hit, under RLS)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM trace'), '0',
	'nor on a hit under row-level security');
done_testing();

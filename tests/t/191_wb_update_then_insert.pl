# A write-behind batch of absolute values is written by two statements
# (issue 18): the UPDATE of the rows that exist, then, only when it did not
# find them all, the INSERT .. ON CONFLICT of the members it did not update.
# Every member's row is written exactly once (row triggers count the events),
# an UPDATE-only batch runs no INSERT (statement triggers), a NOT NULL
# column outside `columns` blocks neither the update of an existing row nor
# (with its default) an insert, a new row that cannot be inserted goes to
# dead letters alone, and a row that row-level security hides from the
# UPDATE is not skipped: it goes through the INSERT's ON CONFLICT and to
# dead letters, as with the one statement before.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wb_upd_ins', redis => $redis);

# the table's owner is not a superuser (row-level security applies to it below)
$node->safe_psql('postgres', q{
CREATE ROLE app;
GRANT CREATE ON SCHEMA public TO app;
SET ROLE app;
CREATE TABLE t (id int PRIMARY KEY, n bigint, name text NOT NULL, tag text NOT NULL DEFAULT 'new');
INSERT INTO t SELECT g, 0, 'row ' || g FROM generate_series(1, 3) g;
CREATE TABLE ev (op text, level text, id int, seq bigserial);
CREATE FUNCTION ev_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.ev (op, level, id) VALUES (TG_OP, TG_LEVEL, CASE WHEN TG_LEVEL = 'ROW' THEN NEW.id END);
  RETURN NULL;
END $$;
CREATE TRIGGER ev_r AFTER INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION ev_row();
CREATE TRIGGER ev_s AFTER INSERT OR UPDATE ON t FOR EACH STATEMENT EXECUTE FUNCTION ev_row();
SELECT redis_sync.write_behind('t', key_prefix => 't:', columns => '{n,name}', flush_interval => '1 h');
});

my $rows = q{SELECT string_agg(id || ':' || n || ':' || name || ':' || tag, ' ' ORDER BY id) FROM t};

sub events
{
	return $node->safe_psql('postgres',
		"SELECT string_agg(op || '/' || level || '=' || c, ' ' ORDER BY op, level) "
		  . "FROM (SELECT op, level, count(*) c FROM ev GROUP BY 1, 2) s");
}

sub drain
{
	my (@cmds) = @_;
	$node->safe_psql('postgres', 'TRUNCATE ev');
	$redis->cli(@$_) for @cmds;
	$node->safe_psql('postgres', "SELECT redis_sync.flush('t')");
}

# existing rows only: one UPDATE, no INSERT statement
drain(map { ([ 'HSET', "t:$_", 'n', 10 + $_ ], [ 'SADD', 't:dirty', $_ ]) } 1 .. 3);
is($node->safe_psql('postgres', $rows),
	'1:11:row 1:new 2:12:row 2:new 3:13:row 3:new', 'existing rows: updated in the fields named, others kept');
is(events(), 'UPDATE/ROW=3 UPDATE/STATEMENT=1', '... each once, by one UPDATE, and no INSERT ran');

# a mixed batch: 2 existing, 2 new, 1 new that cannot be inserted (no name)
drain([ 'HSET', 't:1', 'n', 21 ], [ 'HSET', 't:2', 'n', 22, 'name', 'two' ],
	[ 'HSET', 't:4', 'n', 24, 'name', 'four' ], [ 'HSET', 't:5', 'n', 25, 'name', 'five' ],
	[ 'HSET', 't:6', 'n', 26 ], [ 'SADD', 't:dirty', 1, 2, 4, 5, 6 ]);
is($node->safe_psql('postgres', $rows),
	'1:21:row 1:new 2:22:two:new 3:13:row 3:new 4:24:four:new 5:25:five:new',
	'mixed batch: existing rows updated, new rows inserted with defaults');
is($node->safe_psql('postgres', q{SELECT member || ' ' || sqlstate FROM redis_sync.dead_letters}),
	'6 23502', '... the row that cannot be inserted is a dead letter');
# the batch failed as a whole once (the NOT NULL), then went row by row
my $ev = events();
like($ev, qr/INSERT\/ROW=2\b/, '... each new row inserted once') or diag $ev;
is($node->safe_psql('postgres', "SELECT count(*) FROM ev WHERE op = 'UPDATE' AND level = 'ROW'"), 2,
	'... each existing row updated once');
$node->safe_psql('postgres', 'SELECT redis_sync.discard_dead_letters()');

# rows are written in key order, whatever order the claim hands out (a
# dirty set of 700 integers is a hash table in Redis: SSCAN order is hash
# order); the members are sorted in C for an integer key
$node->safe_psql('postgres', q{INSERT INTO t SELECT g, 0, 'row ' || g FROM generate_series(100, 799) g});
drain((map { [ 'HSET', "t:$_", 'n', 1 ] } 100 .. 799), [ 'SADD', 't:dirty', 100 .. 799 ]);
is($node->safe_psql('postgres', q{SELECT count(*) FROM t WHERE id >= 100 AND n = 1}), 700, 'a batch of 700 rows written');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY seq) prev FROM ev WHERE level = 'ROW') s
 WHERE id < prev}), 0, '... in key order');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ev WHERE level = 'ROW'}), 700, '... each once');

# row-level security hides row 3 from UPDATE (not from SELECT): the member
# is not skipped, its INSERT conflicts and the ON CONFLICT update is refused
$node->safe_psql('postgres', q{
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
ALTER TABLE t FORCE ROW LEVEL SECURITY;
CREATE POLICY sel ON t FOR SELECT USING (true);
CREATE POLICY ins ON t FOR INSERT WITH CHECK (true);
CREATE POLICY upd ON t FOR UPDATE USING (id <> 3) WITH CHECK (true);
});
drain([ 'HSET', 't:1', 'n', 31 ], [ 'HSET', 't:3', 'n', 33, 'name', 'three' ], [ 'SADD', 't:dirty', 1, 3 ]);
is($node->safe_psql('postgres', q{SELECT string_agg(id || ':' || n, ' ' ORDER BY id) FROM t WHERE id IN (1, 3)}),
	'1:31 3:13', 'a row hidden from UPDATE by a policy is not written');
is($node->safe_psql('postgres', q{SELECT member || ' ' || sqlstate FROM redis_sync.dead_letters}),
	'3 42501', '... and is a dead letter (the ON CONFLICT update refused), not skipped');

$node->stop;
done_testing();

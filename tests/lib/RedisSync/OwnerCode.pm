# Set-ups of the TAP tests of table code that the worker runs as the
# table's owner (a policy or trigger that blocks, fails or runs slow), with
# an async canary table whose delivery shows the worker is not held, and of
# in-flight markers planted for the worker's repair.
#
#   use RedisSync::OwnerCode;
#   $node->safe_psql('postgres',
#       RedisSync::OwnerCode::owner_sql('gate', then => 'PERFORM pg_catalog.pg_sleep(3600);')
#       . q{CREATE TABLE ti ...;}
#       . RedisSync::OwnerCode::forced_policy_sql('ti', 'gated', 'public.gate()')
#       . RedisSync::OwnerCode::canary_sql());
#   ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), '...');
#   RedisSync::OwnerCode::canary_set($node, 'after');
#   my $marker = RedisSync::OwnerCode::marker_key($node);
#   my $ti     = RedisSync::OwnerCode::table_oid($node, 'ti');
#   RedisSync::OwnerCode::plant_marker($redis, $marker, '6:1:0:0', $ti, '1');
#
# owner_sql(FUNC, then => SQL, %opts): role alice, table public.ctl (one
# row, owned by alice) and public.FUNC() owned by alice, whose body is
#   [DECLARE <declare>;] BEGIN IF <cond> THEN <then> END IF; RETURN <return>; END
# opts: returns ('bool'; 'trigger'), column ('block'), type ('bool NOT
# NULL'), initial ('false': the row's value), cond ('(SELECT <column> FROM
# public.ctl)'), declare (none), return ('true').
#
# forced_policy_sql(TABLE, POLICY, USING[, CHECK]): TABLE owned by alice,
# row level security enabled and forced, and policy POLICY USING (USING)
# [WITH CHECK (CHECK)].
#
# canary_sql(): table q (id int PRIMARY KEY, v text), write-through async
# under "q:", row (1, 'before').  canary_set(NODE, V) updates its row's v;
# canary_delivered(REDIS, V, SECONDS) waits until q:1's v is V (seconds
# waited, undef at the deadline, as RedisSync::Compare::wait_for).
#
# marker_key(NODE): the in-flight marker hash of database postgres.
# table_oid(NODE, TABLE): the table's oid.  marker_json(OID, KEYS...):
# a marker's value, [[OID,"KEY"],...].  plant_marker(REDIS, MARKER, FIELD,
# OID, KEYS...): HSET MARKER FIELD marker_json(OID, KEYS).
package RedisSync::OwnerCode;

use strict;
use warnings;

use Carp;
use RedisSync::Compare;

sub owner_sql
{
	my ($func, %o) = @_;
	croak 'owner_sql: then => is needed' unless defined $o{then};
	my $returns = $o{returns} // 'bool';
	my $column  = $o{column}  // 'block';
	my $type    = $o{type}    // 'bool NOT NULL';
	my $initial = $o{initial} // 'false';
	my $cond    = $o{cond}    // "(SELECT $column FROM public.ctl)";
	my $return  = $o{return}  // 'true';
	my $declare = defined $o{declare} ? "DECLARE $o{declare};\n" : '';
	return <<"SQL";
CREATE ROLE alice;
CREATE TABLE ctl ($column $type);
INSERT INTO ctl VALUES ($initial);
ALTER TABLE ctl OWNER TO alice;
CREATE FUNCTION public.$func() RETURNS $returns LANGUAGE plpgsql AS \$\$
${declare}BEGIN
  IF $cond THEN
    $o{then}
  END IF;
  RETURN $return;
END \$\$;
ALTER FUNCTION public.$func() OWNER TO alice;
SQL
}

sub forced_policy_sql
{
	my ($table, $policy, $using, $check) = @_;
	my $with = defined $check ? " WITH CHECK ($check)" : '';
	return <<"SQL";
ALTER TABLE $table OWNER TO alice;
ALTER TABLE $table ENABLE ROW LEVEL SECURITY;
ALTER TABLE $table FORCE ROW LEVEL SECURITY;
CREATE POLICY $policy ON $table USING ($using)$with;
SQL
}

sub canary_sql
{
	return <<'SQL';
CREATE TABLE q (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('q', key_prefix => 'q:', delivery => 'async');
INSERT INTO q VALUES (1, 'before');
SQL
}

sub canary_set
{
	my ($node, $value) = @_;
	$node->safe_psql('postgres', "UPDATE q SET v = '$value' WHERE id = 1");
	return;
}

sub canary_delivered
{
	my ($redis, $value, $seconds) = @_;
	return RedisSync::Compare::wait_for(sub { ($redis->cli('HGET', 'q:1', 'v') // '') eq $value }, $seconds);
}

sub marker_key
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
		  . "(SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()");
}

sub table_oid
{
	my ($node, $table) = @_;
	return $node->safe_psql('postgres', "SELECT '$table'::regclass::oid");
}

sub marker_json
{
	my ($oid, @keys) = @_;
	return '[' . join(',', map { qq{[$oid,"$_"]} } @keys) . ']';
}

sub plant_marker
{
	my ($redis, $marker, $field, $oid, @keys) = @_;
	return $redis->cli('HSET', $marker, $field, marker_json($oid, @keys));
}

1;

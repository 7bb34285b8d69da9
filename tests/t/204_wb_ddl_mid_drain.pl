# DDL on a write-behind table that commits between two batches of one drain
# (wave 2j chaos test).  The worker loads the table's configuration once per
# round; the overlapped drain has the next batches claimed and decoded
# while one is written.  A RENAME COLUMN, DROP COLUMN or table RENAME that
# commits after one batch and before the next used to leave the rest of
# the round working from the old configuration: every later member became
# a dead letter ("column ... does not exist", "relation ... does not
# exist") although nothing was wrong with its value.  Now a batch whose
# table's configuration changed since it was loaded is retried with the new
# one: no dead letter, every row gets its key's value.
#
# How the DDL lands between two batches, without sleeps: 1,000 members
# (a set large enough for SSCAN to honour its COUNT), batch_size 100, a
# BEFORE row trigger that waits for an advisory lock the test holds; the
# first batch blocks in it (the next two are already claimed), the DDL
# queues behind the batch's table lock, the test releases the advisory
# lock: the first batch commits, the DDL (queued first) commits before the
# second batch's statement gets the table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use IPC::Run;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbddlmid', redis => $redis);

$node->safe_psql('postgres', q{
CREATE FUNCTION public.hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock_shared(4242);
  RETURN NEW;
END $$;
});

my $locker  = RedisSync::Test::session($node);
my $flusher = RedisSync::Test::session($node);
my $ddl     = RedisSync::Test::session($node);

sub run_case
{
	my ($name, $tbl, $ddl_sql, $rows_query, $expected) = @_;
	my $pfx = "$tbl:";

	$node->safe_psql('postgres', qq{
CREATE TABLE $tbl (id int PRIMARY KEY, v text, v2 text, w text);
CREATE TRIGGER hold BEFORE INSERT OR UPDATE ON $tbl FOR EACH ROW EXECUTE FUNCTION public.hold();
SELECT redis_sync.write_behind('$tbl', key_prefix => '$pfx', batch_size => 100, flush_interval => '1 h');
});
	my $oid = $node->safe_psql('postgres', "SELECT '$tbl'::regclass::oid");
	$locker->query('SELECT pg_advisory_lock(4242)');
	my $cmds = '';
	$cmds .= "HSET $pfx$_ v a$_ v2 a$_ w b$_\nSADD ${pfx}dirty $_\n" for 1 .. 1000;
	IPC::Run::run([ RedisSync::Test::redis_cli_bin(), '-h', '127.0.0.1', '-p', $redis->port ],
		'<', \$cmds, '>', \my $o);
	$flusher->start_query("SELECT redis_sync.flush('$tbl')");

	# the first batch waits in the trigger
	ok( $node->poll_query_until('postgres',
			q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted}, '1'),
		"$name: the first batch waits in the trigger");
	$ddl->start_query($ddl_sql);
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) > 0 FROM pg_locks WHERE relation = $oid AND NOT granted", 't'),
		"$name: the DDL waits for the batch");
	$locker->query('SELECT pg_advisory_unlock(4242)');
	my $d = $ddl->finish_query;
	is($d->{err} =~ /ERROR/ ? $d->{err} : '', '', "$name: the DDL committed");
	$flusher->finish_query;

	# the round may have failed (and be retried): flush until the rows are there
	my $got;
	for (1 .. 20)
	{
		$node->psql('postgres', 'SELECT redis_sync.flush()');
		$got = $node->safe_psql('postgres', $rows_query);
		last if $got eq $expected;
	}
	is($got, $expected, "$name: every row has its key's value");
	is( $node->safe_psql('postgres',
			"SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT error, '; '), '') FROM redis_sync.dead_letters WHERE relid = $oid"),
		'0 ', "$name: no dead letter");
	is($redis->cli('SCARD', "{${pfx}dirty}:rs_processing"), '0', "$name: nothing left in processing");
}

# v3: rows of the first batch got "v" before the rename; later ones have no
# field "v3" (applications must write the new name)
run_case('RENAME COLUMN', 'rc', 'ALTER TABLE rc RENAME COLUMN v TO v3',
	q{SELECT count(*) FROM rc WHERE v2 = 'a' || id AND w = 'b' || id AND (v3 IS NULL OR v3 = 'a' || id)}, '1000');
run_case('DROP COLUMN', 'dc', 'ALTER TABLE dc DROP COLUMN w',
	q{SELECT count(*) FROM dc WHERE v = 'a' || id AND v2 = 'a' || id}, '1000');
run_case('RENAME TABLE', 'rt', 'ALTER TABLE rt RENAME TO rt_new',
	q{SELECT count(*) FROM rt_new WHERE v = 'a' || id AND w = 'b' || id}, '1000');

$locker->quit;
$flusher->quit;
$ddl->quit;
$node->stop;
$redis->stop;
done_testing();

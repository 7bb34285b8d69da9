# pg_partman manages a synced table's daily partitions while writers run:
# its maintenance creates new partitions, and its retention detaches the
# old ones and drops them (or keeps them as plain tables).  The rows of a
# detached or dropped partition are no longer the synced table's, so their
# keys must leave Redis with them.  Before, every key of a retired day
# stayed cached for good (verify(): "extra in cache"; README listed it as a
# limitation: "dropping or detaching one partition leaves the cached keys
# of its rows").  Write-through (pushed at commit) and async delivery
# (through the outbox) are both checked, and new partitions made by the
# maintenance are synced like the others.
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('partman', redis => $redis,
	extra_conf => "redis_sync.naptime = '200ms'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }

is(sq("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'"),
	'1', 'pg_partman is installed (tests/deps.sh installs postgresql-15-partman)')
  or BAIL_OUT('pg_partman missing: run bash tests/deps.sh as root');

# data keys of a prefix (version keys begin with '{')
sub data_keys
{
	my ($prefix) = @_;
	my @k = grep { length } split /\n/, $redis->cli('--scan', '--pattern', "$prefix*");
	return scalar @k;
}

sq(q{
CREATE SCHEMA partman;
CREATE EXTENSION pg_partman SCHEMA partman;
CREATE TABLE ev (id bigint NOT NULL, day date NOT NULL, note text, PRIMARY KEY (id, day))
    PARTITION BY RANGE (day);
CREATE TABLE ea (id bigint NOT NULL, day date NOT NULL, note text, PRIMARY KEY (id, day))
    PARTITION BY RANGE (day);
SELECT partman.create_parent('public.ev', 'day', 'native', 'daily',
                             p_start_partition := (current_date - 7)::text, p_premake := 2);
SELECT partman.create_parent('public.ea', 'day', 'native', 'daily',
                             p_start_partition := (current_date - 7)::text, p_premake := 2);
-- partitions ahead, made by the maintenance after the sync
UPDATE partman.part_config SET premake = 4 WHERE parent_table IN ('public.ev', 'public.ea');
SELECT redis_sync.write_through('ev', key_prefix => 'ev:');
SELECT redis_sync.write_through('ea', key_prefix => 'ea:', delivery => 'async');
INSERT INTO ev SELECT g, current_date - (g % 8), 'n' || g FROM generate_series(1, 8000) g;
INSERT INTO ea SELECT g, current_date - (g % 8), 'n' || g FROM generate_series(1, 8000) g;
SELECT partman.run_maintenance();
SELECT redis_sync.flush();
});
is(data_keys('ev:'), 8000, 'write-through: every row cached');
is(data_keys('ea:'), 8000, 'async: every row cached');

# writers on today's partition and on one the maintenance created
my $script = $node->basedir . '/today.sql';
open(my $fh, '>', $script) or die $!;
print $fh <<'EOS';
\set id random(1, 1000)
UPDATE ev SET note = note || 'x' WHERE id = :id * 8 AND day = current_date;
UPDATE ea SET note = note || 'x' WHERE id = :id * 8 AND day = current_date;
INSERT INTO ev VALUES (100000 + :id, current_date + 3, 'ahead') ON CONFLICT (id, day) DO UPDATE SET note = 'again';
INSERT INTO ea VALUES (100000 + :id, current_date + 3, 'ahead') ON CONFLICT (id, day) DO UPDATE SET note = 'again';
EOS
close $fh;

my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[
		$node->installed_command('pgbench'), '-n', '-c', '2', '-j', '2', '-T', '4',
		'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres'
	],
	'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300));

# retention while the writers run: ev's old partitions dropped, ea's
# detached and kept
sq(q{
UPDATE partman.part_config SET retention = '3 days', retention_keep_table = false
 WHERE parent_table = 'public.ev';
UPDATE partman.part_config SET retention = '3 days', retention_keep_table = true
 WHERE parent_table = 'public.ea';
SELECT partman.run_maintenance();
});
$bench->finish;
is($? >> 8, 0, 'pgbench ran without errors') or diag($err);

my $kept_ev = sq('SELECT count(*) FROM ev');
my $kept_ea = sq('SELECT count(*) FROM ea');
cmp_ok($kept_ev, '<', 8000, "ev: retention dropped old days ($kept_ev rows left)");
cmp_ok($kept_ea, '<', 8000, "ea: retention detached old days ($kept_ea rows left)");
is(sq(q{SELECT count(*) FROM pg_class WHERE relname LIKE 'ea_p%' AND NOT relispartition AND relkind = 'r'}) > 0
	  ? 1 : 0, 1, 'ea: the detached partitions are kept as tables');

sq('SELECT redis_sync.flush()');
is(sq('SELECT count(*) FROM redis_sync.verify(\'ev\')'), '0', 'ev: the cache matches the table (verify)');
is(sq('SELECT count(*) FROM redis_sync.verify(\'ea\')'), '0', 'ea: the cache matches the table (verify)');
is(data_keys('ev:'), $kept_ev, "ev: exactly the table's rows are cached");
is(data_keys('ea:'), $kept_ea, "ea: exactly the table's rows are cached");
is(sq(q{SELECT count(*) FROM ev WHERE note = 'ahead' OR note = 'again'}) > 0 ? 1 : 0, 1,
	'rows written into the partition the maintenance created are in the table');

# a kept, detached partition is a table of its own: not synced
my $old = sq(q{SELECT c.oid::regclass FROM pg_class c WHERE c.relname LIKE 'ea_p%' AND NOT c.relispartition
                 AND c.relkind = 'r' ORDER BY c.relname LIMIT 1});
my $row = sq("SELECT id || ':' || day FROM $old LIMIT 1");
sq("UPDATE $old SET note = 'private'");
sq('SELECT redis_sync.flush()');
is($redis->cli('EXISTS', "ea:$row"), '0', 'a write to a kept detached partition is not pushed');
is(sq("SELECT count(*) FROM pg_trigger WHERE tgrelid = '$old'::regclass AND tgname LIKE 'redis_sync%'"),
	'0', '... which has no redis_sync trigger left');

done_testing();

# The seed's failure: a counter at 97 in the table and in Redis; Redis
# restarts empty (no persistence); the application's next HINCRBY/INCR
# creates the key at 1.  Draining absolute values would set the table to 3
# after three increments.  With counters => '{view_count}' the key is known
# not to be seeded by the extension (no '{key}:rs_seeded' companion), so its
# value is applied as an increment on top of the table (97 + 3 = 100) and
# Redis is corrected to 100 as well.  Checked for format 'hash' and
# 'string', and for both orders of events after the restart:
#
#   A. the application writes before the worker noticed the restart (the
#      worker is held with worker_pause() while Redis restarts and the app
#      writes): increment path; the re-seed must not overwrite the key;
#   B. the worker re-seeds first (no app writes: poll until the key shows the
#      table's value), then the application increments the seeded key:
#      absolute path.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbcounter', redis => $redis);

$node->safe_psql(
	'postgres', q{
CREATE TABLE stats (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0, title text);
INSERT INTO stats VALUES (42, 97, 'answer'), (7, 5, 'seven');
SELECT redis_sync.write_behind('stats', key_prefix => 'stats:', counters => '{view_count}');
CREATE TABLE products (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0);
INSERT INTO products VALUES (42, 97), (7, 5);
SELECT redis_sync.write_behind('products', key_prefix => 'viewcount:', dirty_set => 'dirty-products',
                               columns => '{view_count}', format => 'string', counters => '{view_count}');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

sub run_id
{
	my ($id) = $redis->cli('INFO', 'server') =~ /run_id:(\w+)/;
	return $id;
}

sub sql { return $node->safe_psql('postgres', $_[0]); }

# the two shapes: how the app increments, how to read the value back
my %shape = (
	hash => {
		table => 'stats',
		dirty => 'stats:dirty',
		incr  => sub { [ 'HINCRBY', "stats:$_[0]", 'view_count', 1 ] },
		get   => sub { $redis->cli('HGET', "stats:$_[0]", 'view_count') },
		seed_key => sub { "{stats:$_[0]}:rs_seeded" },
	},
	string => {
		table => 'products',
		dirty => 'dirty-products',
		incr  => sub { [ 'INCR', "viewcount:$_[0]" ] },
		get   => sub { $redis->cli('GET', "viewcount:$_[0]") },
		seed_key => sub { "{viewcount:$_[0]}:rs_seeded" },
	},
);

sub app_increments
{
	my ($s, $id, $n) = @_;
	for (1 .. $n)
	{
		$redis->cli(@{ $s->{incr}->($id) });
		$redis->cli('SADD', $s->{dirty}, $id);
	}
}

sub flush_clean
{
	my ($s) = @_;
	my ($secs) = RedisSync::WB::flush_until_clean($node, $redis,
		table => $s->{table}, dirty => $s->{dirty}, timeout => 60);
	return ok(defined $secs, "$s->{table}: flush() emptied $s->{dirty} and its processing set");
}

sub table_value
{
	my ($s, $id) = @_;
	return sql("SELECT view_count FROM $s->{table} WHERE id = $id");
}

# seed Redis from the table with the helper (delta 0): both keys hold 97
for my $f (qw(hash string))
{
	my $s = $shape{$f};
	is(sql("SELECT redis_sync.hincrby('$s->{table}', '42', 'view_count', 0)"), 97,
		"$f: hincrby(..., 0) seeds the key from the table and returns 97");
	is($s->{get}->(42), 97, "$f: Redis holds 97");
	is($redis->cli('EXISTS', $s->{seed_key}->(42)), 1, "$f: key marked seeded");
	flush_clean($s);
	is(table_value($s, 42), 97, "$f: table still 97");
}
is($redis->cli('HGET', 'stats:42', 'title'), 'answer', 'hash: the seed copied the other columns too');

# A. Redis restarts empty while the worker is held; the app increments first
my $rid0 = run_id();
ok($node->poll_query_until('postgres', "SELECT redis_run_id = '$rid0' FROM redis_sync.worker_stats"),
	'worker knows the run_id');
is(sql('SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$redis->stop;
$redis->start;
my $rid1 = run_id();
isnt($rid1, $rid0, 'Redis restarted');
is($redis->cli('DBSIZE'), 0, 'Redis is empty');
for my $f (qw(hash string))
{
	my $s = $shape{$f};
	app_increments($s, 42, 3);
	is($s->{get}->(42), 3, "$f: after the restart the app's increments start from nothing (3)");
	is($redis->cli('EXISTS', $s->{seed_key}->(42)), 0, "$f: the recreated key is not marked seeded");
}
my $log_offset = -s $node->logfile;
sql('SELECT redis_sync.worker_resume()');
ok($node->poll_query_until('postgres', "SELECT redis_run_id = '$rid1' FROM redis_sync.worker_stats"),
	'worker noticed the restart');
for my $f (qw(hash string))
{
	my $s = $shape{$f};
	flush_clean($s);
	is(table_value($s, 42), 100, "$f: table says 100 (97 + 3), not 3");
	is($s->{get}->(42), 100, "$f: Redis corrected to 100");
	is($redis->cli('EXISTS', $s->{seed_key}->(42)), 1, "$f: key now marked seeded");
	# the key the app did not touch was re-seeded from the table
	ok( defined RedisSync::Compare::wait_for(sub { ($s->{get}->(7) // '') eq '5' }, 30),
		"$f: untouched key 7 re-seeded with the table value 5");
	is(table_value($s, 7), 5, "$f: row 7 unchanged");
	# more increments on the corrected key are absolute from now on
	app_increments($s, 42, 2);
	flush_clean($s);
	is(table_value($s, 42), 102, "$f: two more increments: table 102");
	is($s->{get}->(42), 102, "$f: Redis 102");
}
is($redis->cli('HGET', 'stats:42', 'title'), 'answer',
	'hash: correction filled the missing non-counter field from the table');
is(sql("SELECT title FROM stats WHERE id = 42"), 'answer', 'hash: title kept in the table');
my $log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/restarted \(run_id \Q$rid1\E, was \Q$rid0\E\)/, 'restart logged');
like($log, qr/re-seeded \d+ write-behind keys of/, 're-seed logged');

# B. Redis restarts empty, no app writes: the worker re-seeds from the table
$log_offset = -s $node->logfile;
$redis->stop;
my $t0 = time;
$redis->start;
my $rid2 = run_id();
for my $f (qw(hash string))
{
	my $s = $shape{$f};
	my $w = RedisSync::Compare::wait_for(sub { ($s->{get}->(42) // '') eq '102' }, 30);
	ok(defined $w, "$f: worker re-seeded key 42 with the table value 102 after the restart");
	diag(sprintf('%s: Redis restart to re-seeded key: %.2fs', $f, time - $t0)) if defined $w;
	is($redis->cli('EXISTS', $s->{seed_key}->(42)), 1, "$f: re-seeded key marked seeded");
	app_increments($s, 42, 3);
	flush_clean($s);
	is(table_value($s, 42), 105, "$f: three increments on the re-seeded key: table 105");
	is($s->{get}->(42), 105, "$f: Redis 105");
}
$log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/restarted \(run_id \Q$rid2\E, was \Q$rid1\E\)/, 'second restart logged');

RedisSync::WB::no_dead_letters($node);

$node->stop;
done_testing();

# Redis full (maxmemory, noeviction): the apply script refuses each key's
# write with an OOM error of its own (redis.pcall), which it reports in its
# reply ({applied, index, error, ...}) rather than as an error of the call.
# The pushes of named rows (warm_push.c push_rows: resync(), the worker's
# refresh after a Redis restart, marker repairs) read only errors of the
# whole call, so a refusal of every key counted as done:
#
#   - resync() returned the number of keys it "repaired", without an error,
#     while Redis kept the different values;
#   - after Redis restarted from an older snapshot (RDB) at its maxmemory,
#     the worker logged "refreshed N cached keys", recorded the restart work
#     as done, and the snapshot's older values stayed cached for good.
#
# Since then the push fails, and (later) the keys Redis refused for memory
# are deleted instead, fenced (a delete needs no memory): a miss until
# Redis has memory, where they kept the older or different values before.
#
# The worker's claims recorded again after the restart, refused for memory
# as well, were logged with the hint of a conflict ("another database or
# server synced an overlapping prefix").
#
# Found by the wave 2p chaos run.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(sleep);

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('oom_refused_repairs', redis => $redis,
	extra_conf => "redis_sync.retry_max_backoff = '500ms'");

sub used_memory
{
	my ($m) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
	return $m;
}

# maxmemory a little above what Redis uses, then filler keys until Redis
# refuses one: every write that needs memory is refused from then on
sub fill_redis
{
	$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
	$redis->cli('CONFIG', 'SET', 'maxmemory', used_memory() + 300 * 1024);
	for my $i (1 .. 1000)
	{
		my $r = $redis->cli('EVAL',
			"for i = 1, 100 do local r = redis.pcall('SET', 'filler:' .. ARGV[1] .. ':' .. i, string.rep('z', 2000)); "
			  . "if type(r) == 'table' and r.err then return r.err end end return 'ok'", '0', $i);
		return if $r =~ /OOM/;
	}
	die 'Redis never refused a write';
}

sub free_redis
{
	$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
	$redis->cli('EVAL', "for _, k in ipairs(redis.call('KEYS', 'filler:*')) do redis.call('UNLINK', k) end return 1", '0');
}

sub verify_count
{
	return $node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('w')});
}

$node->safe_psql('postgres', q{
CREATE TABLE w (id int PRIMARY KEY, v int, pad text);
INSERT INTO w SELECT g, 1, repeat('p', 1000) FROM generate_series(1, 300) g;
SELECT redis_sync.write_through('w', key_prefix => 'w:', warm => false);
SELECT redis_sync.warm('w');
});
is(verify_count(), '0', 'w cached');

# --- 1. resync() while Redis refuses every write
$redis->cli('HSET', 'w:5', 'v', '999', 'app_note', 'precious');
$redis->cli('HSET', 'w:6', 'v', '998');
is(verify_count(), '2', 'two keys differ from their rows');
fill_redis();
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.resync('w')});
note("resync() under OOM: rc $rc, out '$out', err '$err'");
my $left = verify_count();
ok($rc != 0 || $left eq '0',
	'resync() under OOM either fails or repairs: it does not report keys repaired that Redis refused')
  or diag("resync() returned '$out' without an error; verify() still finds $left differences");
like($err, qr/OOM/, 'the error names the OOM refusal');
# the differing keys Redis refused to write are deleted instead (a delete
# needs no memory): a miss, not the value resync() was asked to repair
is($redis->cli('HGET', 'w:5', 'v'), '', 'the row Redis refused is deleted from its key, not left with its different value');
is($redis->cli('HGET', 'w:5', 'app_note'), 'precious', 'a field the application keeps in the hash stays');
is($redis->cli('HGET', 'w:6', 'v'), '', 'so is the other one');
like($err, qr/deleted instead/, 'the error says so');
free_redis();
is($node->safe_psql('postgres', q{SELECT redis_sync.resync('w')}), '2', 'resync() repairs once Redis has memory');
is($redis->cli('HGET', 'w:5', 'app_note'), 'precious', 'the application\'s field is still there');
is(verify_count(), '0', 'w cache == table');

# a key Redis refuses for another reason (an application wrote a string
# where the table's hash is): resync() says so too
$redis->cli('DEL', 'w:7');
$redis->cli('SET', 'w:7', 'junk');
($rc, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.resync('w')});
isnt($rc, 0, 'resync() fails when Redis refuses a key as the wrong type');
like($err, qr/Redis refused to write 1 keys of table "w".*\n.*WRONGTYPE/, 'the error names the table and the refusal');
$redis->cli('DEL', 'w:7');
is($node->safe_psql('postgres', q{SELECT redis_sync.resync('w')}), '1', 'resync() fills the key deleted by hand');
is(verify_count(), '0', 'w cache == table again');

# --- 2. the refresh after Redis restarted from an older snapshot, full
# in the snapshot, a key of the wrong type: refused by the refresh for good,
# which must not keep the refresh of the others pending forever
$redis->cli('DEL', 'w:8');
$redis->cli('SET', 'w:8', 'junk');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
my $full = used_memory();
$node->safe_psql('postgres', q{UPDATE w SET v = 2});
is(verify_count(), '1', 'the update is cached (w:8 aside)');
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$redis->stop;
# the snapshot alone fills it: every write that needs memory is refused
$redis->{extra} = [ '--maxmemory', int($full / 2), '--maxmemory-policy', 'noeviction' ];
$redis->start;
is($redis->cli('HGET', 'w:10', 'v'), '1', 'Redis is back with the snapshot\'s older value');
like($redis->cli('HSET', 'probe', 'f', '1'), qr/OOM/, 'and refuses writes for memory');
my $logpos = -s $node->logfile;
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');

# the worker's first pass over the keys, refused
my $deadline = time + 60;
while (time < $deadline)
{
	my $log = slurp_file($node->logfile, $logpos);
	last if $log =~ /refreshed \d+ cached keys of table|refresh.*failed|could not be refreshed/;
	sleep 0.1;
}
is($redis->cli('EXISTS', 'w:10'), '0', 'while Redis is full the older value is deleted: a miss, never the older row');
is($redis->cli('GET', 'w:8'), 'junk', 'the key of another type stays (the application\'s)');
# the claims the worker records again are refused for memory too: said so,
# not blamed on another holder of an overlapping prefix
my $log = slurp_file($node->logfile, $logpos);
like($log, qr/could not record the key prefix claim of table \d+ again: [^\n]*\n[^\n]*DETAIL:  OOM/,
	'the refused claim is logged with Redis\'s reason');
unlike($log, qr/overlapping prefix while Redis had lost the claims/,
	'and without the hint about a conflicting prefix');

# memory again: the refresh must still come (not counted done while refused)
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
$deadline = time + 30;
$left = verify_count();
while ($left ne '1' && time < $deadline)
{
	sleep 0.2;
	$left = verify_count();
}
is($left, '1', 'after Redis has memory again the snapshot\'s older values are refreshed (w:8 aside)')
  or diag(join("\n", grep { /redis_sync worker/ } split /\n/, slurp_file($node->logfile, $logpos)));
is($redis->cli('HGET', 'w:10', 'v'), '2', 'w:10 holds its row\'s value');
ok($node->wait_for_log(qr/re-warmed \d+ keys of table/, $logpos),
	'the work after the restart ends although Redis refuses w:8 for good');
like(slurp_file($node->logfile, $logpos), qr/WARNING:  Redis refused to write 1 keys of table "w"\n[^\n]*DETAIL:  WRONGTYPE/,
	'the refresh logs the key of the wrong type');

# --- 3. a hash shared with the table's write-behind fields: resync() under
# OOM leaves it as it is (those fields are Redis's newer data, for the
# drain), as a refused eventual push does
$node->safe_psql('postgres', q{
CREATE TABLE sh (id int PRIMARY KEY, name text, views int NOT NULL DEFAULT 0);
INSERT INTO sh SELECT g, 'n' || g, 0 FROM generate_series(1, 20) g;
SELECT redis_sync.write_through('sh', key_prefix => 'sh:', columns => '{id,name}', warm => false);
SELECT redis_sync.write_behind('sh', key_prefix => 'sh:', columns => '{views}', flush_interval => '1 h');
SELECT redis_sync.warm('sh');
});
$redis->cli('HSET', 'sh:3', 'name', 'different', 'views', '42');
fill_redis();
($rc, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.resync('sh')});
like($err, qr/OOM/, 'resync() of the shared table under OOM fails for memory');
is($redis->cli('HGET', 'sh:3', 'views'), '42', 'the shared hash keeps its write-behind field');
is($redis->cli('HGET', 'sh:3', 'name'), 'different', 'and is left as it is');
free_redis();
like($node->safe_psql('postgres', q{SELECT redis_sync.resync('sh')}), qr/^\d+$/, 'resync() succeeds once Redis has memory');
is($redis->cli('HGET', 'sh:3', 'name'), 'n3', 'the write-through field is its row\'s');
is($redis->cli('HGET', 'sh:3', 'views'), '42', 'the write-behind field is still there');

# --- 4. a table cached as JSON strings: the refused key is deleted whole
$node->safe_psql('postgres', q{
CREATE TABLE wj (id int PRIMARY KEY, v int);
INSERT INTO wj SELECT g, g FROM generate_series(1, 20) g;
SELECT redis_sync.write_through('wj', key_prefix => 'wj:', format => 'json', warm => false);
SELECT redis_sync.warm('wj');
});
$redis->cli('SET', 'wj:3', '{"id": 3, "v": 999}');
fill_redis();
($rc, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.resync('wj')});
like($err, qr/OOM/, 'resync() of the JSON table under OOM fails for memory');
is($redis->cli('EXISTS', 'wj:3'), '0', 'the JSON string that differed is deleted');
free_redis();
is($node->safe_psql('postgres', q{SELECT redis_sync.resync('wj')}), '1', 'resync() fills it once Redis has memory');
like($redis->cli('GET', 'wj:3'), qr/"v": ?3\b/, 'wj:3 holds its row');

$node->stop;
$redis->stop;
done_testing();

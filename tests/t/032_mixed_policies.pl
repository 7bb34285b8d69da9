# One table, two policies on one Redis hash per row:
#   write-through for id, name, price (SQL is the writer)
#   write-behind for view_count, likes (Redis is the writer; counters)
# both under the prefix 'p:'.  pgbench updates name/price while redis-cli
# --pipe clients HINCRBY view_count / likes and SADD p:dirty, and the worker
# drains every 200 ms.  At the end:
#   - no echo: the drain's row writes are not captured by the write-through
#     trigger (captured grows by exactly the pgbench UPDATEs; drain-only
#     rounds afterwards, of UPDATEs and of INSERTs of rows created in Redis,
#     leave captured/pushed/queued unchanged);
#   - no lost increment: every row's view_count / likes = initial + the
#     number of HINCRBYs sent for it;
#   - cache == table for every column.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time);

my $ROWS       = 1000;
my $PG_CLIENTS = 4;
my $PG_TX      = 750;       # per pgbench client
my $VIEW_CLIENTS = 2;
my $VIEWS      = 5000;      # HINCRBY view_count per view client
my $LIKES      = 2000;      # HINCRBY likes (one client)
my $CHUNK      = 500;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbmixed', redis => $redis,
	extra_conf => "max_connections = 50\n");

# the comparison reads every column: write-through's and write-behind's
my $p = RedisSync::Synced::synced_table($node, 'p',
	columns => 'id int PRIMARY KEY, name text, price numeric(12,2),
                view_count bigint NOT NULL DEFAULT 0, likes bigint NOT NULL DEFAULT 0',
	with => "columns => '{id,name,price}'",
	fill => "SELECT g, 'n' || g, g / 10.0, g, 0 FROM generate_series(1, $ROWS) g",
	sql  => q{SELECT redis_sync.write_behind('p', key_prefix => 'p:', columns => '{view_count,likes}',
                               counters => '{view_count,likes}', flush_interval => '200 ms');});
is($node->safe_psql('postgres', "SELECT string_agg(policy, ',' ORDER BY policy) FROM redis_sync.tables WHERE relid = 'p'::regclass"),
	'write_behind,write_through', 'table p has both policies');
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
is($redis->cli('HGET', 'p:5', 'name'), 'n5', 'write-through pushed the inserted rows');
is($redis->cli('HEXISTS', 'p:5', 'view_count'), 0, '... without the write-behind columns');

my @statcols = qw(captured pushed queued applied);
sub stats
{
	my $row = $node->safe_psql('postgres',
		# one row per policy: each has its own path's counters
		'SELECT ' . join(', ', map { "sum($_)" } @statcols) . q{ FROM redis_sync.stats WHERE "table" = 'p'::regclass});
	my %s;
	@s{@statcols} = split /\|/, $row;
	return \%s;
}
my $s0 = stats();
note('stats before the load: ' . join(', ', map { "$_=$s0->{$_}" } @statcols));

# expected increments per row
my (%views, %likes);
my $dir = "$PostgreSQL::Test::Utils::tmp_check/wbmixed";
mkdir $dir or die "$dir: $!";
my @redis_jobs;    # [ client name, [ files ] ]
for my $c (0 .. $VIEW_CLIENTS - 1)
{
	my @files;
	for my $k (0 .. $VIEWS / $CHUNK - 1)
	{
		my @cmds;
		for my $j ($k * $CHUNK .. ($k + 1) * $CHUNK - 1)
		{
			my $id = (($j * 7 + $c * 13) % $ROWS) + 1;
			$views{$id}++;
			push @cmds, [ 'HINCRBY', "p:$id", 'view_count', 1 ], [ 'SADD', 'p:dirty', $id ];
		}
		push @files, RedisSync::WB::write_resp("$dir/v${c}_$k.resp", @cmds);
	}
	push @redis_jobs, [ "views$c", \@files ];
}
{
	my @files;
	for my $k (0 .. $LIKES / $CHUNK - 1)
	{
		my @cmds;
		for my $j ($k * $CHUNK .. ($k + 1) * $CHUNK - 1)
		{
			my $id = (($j * 3) % ($ROWS / 2)) + 1;    # the first half only
			$likes{$id}++;
			push @cmds, [ 'HINCRBY', "p:$id", 'likes', 1 ], [ 'SADD', 'p:dirty', $id ];
		}
		push @files, RedisSync::WB::write_resp("$dir/l_$k.resp", @cmds);
	}
	push @redis_jobs, [ 'likes', \@files ];
}

# start everything at once
my $script = "$dir/update.sql";
open my $fh, '>', $script or die;
print $fh <<"EOS";
\\set id random(1, $ROWS)
\\set r random(1, 1000000)
UPDATE p SET name = 'u' || :r, price = :r / 100.0 WHERE id = :id;
EOS
close $fh;
my ($pgb_out, $pgb_err) = ('', '');
my $pgb = IPC::Run::start(
	[
		'pgbench', '-n', '-c', $PG_CLIENTS, '-j', $PG_CLIENTS, '-t', $PG_TX,
		'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres'
	],
	'<', \undef, '>', \$pgb_out, '2>', \$pgb_err, IPC::Run::timeout(600));
my $cli = RedisSync::Test::redis_cli_bin();
my @rh;
for my $job (@redis_jobs)
{
	my ($name, $files) = @$job;
	my $sh = join("\n",
		'set -e',
		map { "$cli -h 127.0.0.1 -p " . $redis->port . " --pipe < $_ > $_.out 2>&1; sleep 0.01" } @$files);
	my ($o, $e) = ('', '');
	push @rh, [ $name, IPC::Run::start([ 'bash', '-c', $sh ], '<', \undef, '>', \$o, '2>', \$e,
			IPC::Run::timeout(600)), \$e ];
}
my $t0 = time;
ok($pgb->finish, 'pgbench finished') or diag($pgb_err);
my ($tx) = $pgb_out =~ /number of transactions actually processed: (\d+)/;
is($tx, $PG_CLIENTS * $PG_TX, "pgbench: $tx UPDATEs committed");
my ($failed) = $pgb_out =~ /number of failed transactions: (\d+)/;
is($failed // 0, 0, 'pgbench: no failed transactions');
for my $r (@rh)
{
	ok($r->[1]->finish, "redis client $r->[0] finished") or diag(${ $r->[2] });
}
diag(sprintf('concurrent load (%d UPDATEs, %d HINCRBYs) took %.2fs',
	$tx // 0, $VIEW_CLIENTS * $VIEWS + $LIKES, time - $t0));
my $bad = 0;
for my $f (glob "$dir/*.out")
{
	eval { RedisSync::WB::check_pipe_output(slurp_file($f), 2 * $CHUNK); 1 }
	  or do { $bad++; diag("$f: $@") };
}
is($bad, 0, 'every redis-cli --pipe chunk: errors 0, all replies');

# drain, and deliver anything the write-through side queued
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis,
	table => 'p', dirty => 'p:dirty', timeout => 60);
ok(defined $secs, 'flush() emptied p:dirty and its processing set');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'outbox empty');
RedisSync::WB::no_dead_letters($node, 'no dead letters after the concurrent load');

# no echo during the load: only pgbench's UPDATEs were captured
my $s1 = stats();
note('stats after the load: ' . join(', ', map { "$_=$s1->{$_}" } @statcols));
is($s1->{captured} - $s0->{captured}, $PG_CLIENTS * $PG_TX,
	'captured grew by the pgbench UPDATEs only (drain writes not captured)');
cmp_ok(($s1->{pushed} - $s0->{pushed}) + ($s1->{queued} - $s0->{queued}), '<=', $PG_CLIENTS * $PG_TX,
	'pushed + queued grew by at most the pgbench UPDATEs');
cmp_ok($s1->{applied} - $s0->{applied}, '>', 0, 'the drain applied rows');

# no lost increment
my $vc = RedisSync::WB::column_dump($node, 'p', 'id', 'view_count');
my $lk = RedisSync::WB::column_dump($node, 'p', 'id', 'likes');
RedisSync::WB::maps_equal($vc, { map { $_ => $_ + ($views{$_} // 0) } 1 .. $ROWS },
	'view_count = initial + HINCRBYs for every row');
RedisSync::WB::maps_equal($lk, { map { $_ => $likes{$_} // 0 } 1 .. $ROWS },
	'likes = HINCRBYs for every row');
is($node->safe_psql('postgres', 'SELECT sum(view_count) - sum(id), sum(likes) FROM p'),
	($VIEW_CLIENTS * $VIEWS) . '|' . $LIKES, 'sums add up');

# cache == table for every column (the counter correction writes the
# table's previous value into Redis with HINCRBY, so every counter field
# exists in Redis after the first drain of a key)
$p->cache_matches($redis, name => 'cache == table, all columns');

# no echo in a drain-only round
my @cmds;
push @cmds, [ 'HINCRBY', "p:$_", 'view_count', 1 ], [ 'SADD', 'p:dirty', $_ ] for 1 .. $ROWS;
RedisSync::WB::write_resp("$dir/more.resp", @cmds);
RedisSync::WB::pipe_run($redis, "$dir/more.resp", 2 * $ROWS);
($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'p', dirty => 'p:dirty', timeout => 60);
ok(defined $secs, 'second drain done');
my $s2 = stats();
note('stats after the drain-only round: ' . join(', ', map { "$_=$s2->{$_}" } @statcols));
is($s2->{applied} - $s1->{applied}, $ROWS, "drain applied $ROWS rows");
is_deeply([ @$s2{qw(captured pushed queued)} ], [ @$s1{qw(captured pushed queued)} ],
	'captured, pushed, queued unchanged by the drain (no echo)');
is(RedisSync::Compare::outbox_depth($node), 0, 'nothing queued in the outbox');
is($node->safe_psql('postgres', 'SELECT sum(view_count) - sum(id) FROM p'),
	$VIEW_CLIENTS * $VIEWS + $ROWS, 'one more increment per row applied');
$p->cache_matches($redis, name => 'cache == table after the drain-only round');

# no echo of drain INSERTs either: rows the application creates in Redis
# (new ids) are inserted by the drain; the write-through trigger must not
# capture them (an UPDATE touching only view_count/likes would not be
# captured anyway, an INSERT would)
my $NEW = 50;
@cmds = ();
push @cmds, [ 'HINCRBY', "p:$_", 'view_count', 1 ], [ 'HINCRBY', "p:$_", 'likes', 2 ],
  [ 'SADD', 'p:dirty', $_ ]
  for $ROWS + 1 .. $ROWS + $NEW;
RedisSync::WB::write_resp("$dir/new.resp", @cmds);
RedisSync::WB::pipe_run($redis, "$dir/new.resp", 3 * $NEW);
($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'p', dirty => 'p:dirty', timeout => 60);
ok(defined $secs, 'drain of new rows done');
my $s3 = stats();
note('stats after the drain of new rows: ' . join(', ', map { "$_=$s3->{$_}" } @statcols));
is($s3->{applied} - $s2->{applied}, $NEW, "drain applied $NEW new rows");
is_deeply([ @$s3{qw(captured pushed queued)} ], [ @$s2{qw(captured pushed queued)} ],
	'captured, pushed, queued unchanged by the drain INSERTs (no echo)');
is($node->safe_psql('postgres', "SELECT count(*), sum(view_count), sum(likes) FROM p WHERE id > $ROWS"),
	"$NEW|$NEW|" . (2 * $NEW), 'new rows inserted with their counters');
for my $col (qw(view_count likes))
{
	my $cache = RedisSync::WB::hash_field_dump($redis, 'p:', $col);
	RedisSync::WB::maps_equal(RedisSync::WB::column_dump($node, 'p', 'id', $col), $cache,
		"$col: Redis == table for all rows");
}
RedisSync::WB::no_dead_letters($node);

$node->stop;
done_testing();

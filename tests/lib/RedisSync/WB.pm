# Helpers for the redis_sync write-behind TAP tests (tests/t/03x_*.pl).
#
#   use RedisSync::WB;
#   RedisSync::WB::write_resp($file, [ 'HINCRBY', 'stats:1', 'view_count', 1 ], ...);
#   my $h = RedisSync::WB::pipe_start($redis, $file, \$out);   # redis-cli --pipe
#   my ($secs, $applied, $calls) = RedisSync::WB::flush_until_clean($node, $redis,
#       table => 'stats', dirty => 'stats:dirty', timeout => 120);
#   RedisSync::WB::wait_worker($node, old_pid => $pid, timeout => 60);
#   my $pid = RedisSync::WB::restart_worker($node);   # settings read anew
#   ok(RedisSync::WB::worker_sleeping($node), '...');   # in a table's pg_sleep()
#   $node->safe_psql('postgres', RedisSync::WB::sleep_trigger_sql('t', 30, '(SELECT slow FROM ctl)'));
#   my $vals = RedisSync::WB::hash_field_dump($redis, 'stats:', 'view_count');
package RedisSync::WB;

use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Utils ();
use RedisSync::RESP;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(time sleep);

# RESP encoding of one command (RedisSync::RESP's)
sub resp
{
	return RedisSync::RESP::encode(@_);
}

# write_resp($file, \@cmd, \@cmd, ...): a redis-cli --pipe input file
sub write_resp
{
	my ($file, @cmds) = @_;
	open my $fh, '>:raw', $file or die "$file: $!";
	print $fh resp(@$_) for @cmds;
	close $fh or die "$file: $!";
	return $file;
}

# Run redis-cli --pipe < $file and wait; returns the output.  Dies unless
# redis-cli reports "errors: 0, replies: N" with N = $expect (if given).
sub pipe_run
{
	my ($redis, $file, $expect) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run [ RedisSync::Test::redis_cli_bin(), '-h', '127.0.0.1',
		'-p', $redis->port, '--pipe' ], '<', $file, '>', \$out, '2>', \$err,
	  IPC::Run::timeout(300)
	  or die "redis-cli --pipe failed: $out $err";
	check_pipe_output($out . $err, $expect);
	return $out;
}

sub check_pipe_output
{
	my ($out, $expect) = @_;
	my ($errors, $replies) = $out =~ /errors:\s*(\d+),\s*replies:\s*(\d+)/
	  or die "unexpected redis-cli --pipe output: $out";
	die "redis-cli --pipe: $errors errors: $out" if $errors != 0;
	die "redis-cli --pipe: $replies replies, expected $expect"
	  if defined $expect && $replies != $expect;
	return $replies;
}

# SCARD / HGET / GET shortcuts
sub scard { my ($redis, $key) = @_; return 0 + ($redis->cli('SCARD', $key) || 0); }

# processing set name the extension uses for a dirty set
sub processing_set
{
	my ($dirty) = @_;
	return $dirty =~ /\{[^}]+\}/ ? "$dirty:rs_processing" : "{$dirty}:rs_processing";
}

# One column of redis_sync.stats for a table.
sub wb_stat
{
	my ($node, $table, $col) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT $col FROM redis_sync.stats WHERE "table" = '$table'::regclass});
}

# Call redis_sync.flush(table) until the dirty set and the processing set are
# empty.  Returns (seconds, rows applied as flush() reported, flush calls);
# seconds is undef at the deadline.
sub flush_until_clean
{
	my ($node, $redis, %o) = @_;
	my $proc     = processing_set($o{dirty});
	my $t0       = time;
	my $deadline = $t0 + ($o{timeout} // 120);
	my ($applied, $calls) = (0, 0);
	while (1)
	{
		my ($ret, $out, $err) =
		  $node->psql('postgres', "SELECT redis_sync.flush('$o{table}')");
		$calls++;
		if ($ret == 0) { $applied += $out; }
		else           { note("flush failed: $err"); }
		return (time - $t0, $applied, $calls)
		  if $ret == 0
		  && scard($redis, $o{dirty}) == 0
		  && scard($redis, $proc) == 0;
		return (undef, $applied, $calls) if time > $deadline;
		sleep 0.05 if $ret != 0;
	}
}

# Wait until the node accepts connections and a worker runs (with a pid other
# than old_pid, if given).  Returns the new worker pid, or undef at the
# deadline.
sub wait_worker
{
	my ($node, %o) = @_;
	my $deadline = time + ($o{timeout} // 60);
	my $cond = 'worker_running AND worker_pid IS NOT NULL'
	  . (defined $o{old_pid} ? " AND worker_pid <> $o{old_pid}" : '');
	while (1)
	{
		my ($ret, $out) = $node->psql('postgres',
			"SELECT CASE WHEN $cond THEN worker_pid END FROM redis_sync.worker_stats");
		return $out if $ret == 0 && $out ne '';
		return undef if time > $deadline;
		sleep 0.05;
	}
}

# SQL for a BEFORE INSERT OR UPDATE row trigger on $table (function
# public.<table>_trg) that sleeps $seconds when $cond (SQL, default true)
# holds: slow table code for the worker's drain.
sub sleep_trigger_sql
{
	my ($table, $seconds, $cond) = @_;
	$cond //= 'true';
	return <<"SQL";
CREATE FUNCTION public.${table}_trg() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF $cond THEN
		PERFORM pg_catalog.pg_sleep($seconds);
	END IF;
	RETURN NEW;
END \$\$;
CREATE TRIGGER ${table}_trg BEFORE INSERT OR UPDATE ON $table FOR EACH ROW EXECUTE FUNCTION public.${table}_trg();
SQL
}

# Wait (poll_query_until's deadline) until the database's worker sleeps in
# pg_sleep() (a table's slow code); $activity, if given, is a LIKE pattern
# its pg_stat_activity.query must match as well.  True once it does.
sub worker_sleeping
{
	my ($node, $activity) = @_;
	my $and = defined $activity ? " AND query LIKE '$activity'" : '';
	return $node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM pg_stat_activity
	 WHERE backend_type = 'redis_sync worker' AND wait_event = 'PgSleep'$and});
}

# Terminate the database's worker and wait for the launcher's new one, which
# reads the database's and role's settings at its start.  Returns the new
# worker's pid, or undef at the deadline.
sub restart_worker
{
	my ($node, %o) = @_;
	my $old = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'});
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
	return wait_worker($node, old_pid => $old, timeout => $o{timeout});
}

my $DUMP_LUA = <<'LUA';
local out = {}
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    if redis.call('TYPE', k).ok == ARGV[4] then
      local v
      if ARGV[4] == 'hash' then v = redis.call('HGET', k, ARGV[2]) else v = redis.call('GET', k) end
      if v == false then v = '<nil>' end
      out[#out + 1] = k .. ARGV[3] .. v
    end
  end
until cursor == '0'
return table.concat(out, '\n')
LUA

# { member => value } of one hash field for every hash under $prefix
# (member = key without the prefix; '<nil>' when the field is absent).
# With type => 'string': the string values under $prefix.
sub hash_field_dump
{
	my ($redis, $prefix, $field, %o) = @_;
	(my $pat = $prefix) =~ s/([*?\[\]\\])/\\$1/g;
	my $out = $redis->cli('--raw', 'EVAL', $DUMP_LUA, '0', "$pat*", $field // '',
		chr(31), $o{type} // 'hash');
	my %dump;
	for my $line (split /\n/, $out)
	{
		my ($k, $v) = split /\x1f/, $line, 2;
		$dump{ substr($k, length $prefix) } = $v;
	}
	return \%dump;
}

# { key text => value text } of one column from a table
sub column_dump
{
	my ($node, $table, $keycol, $col) = @_;
	my %d;
	for my $line (split /\n/,
		$node->safe_psql('postgres', "SELECT $keycol, coalesce(${col}::text, '<null>') FROM $table"))
	{
		my ($k, $v) = split /\|/, $line, 2;
		$d{$k} = $v;
	}
	return \%d;
}

# Test::More assertion: redis_sync.dead_letters is empty; diags a few.
sub no_dead_letters
{
	my ($node, $name) = @_;
	my $n = $node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters');
	my $ok = is($n, 0, $name // 'no dead letters');
	diag($node->safe_psql('postgres',
			q{SELECT relid::regclass || ' ' || member || ' ' || raw_value::text || ': ' || error || ' (' || sqlstate || ')'
			    FROM redis_sync.dead_letters ORDER BY member LIMIT 5}))
	  if !$ok;
	return $ok;
}

# Test::More assertion: two { key => value } maps are equal; diags up to 10
# differences.
sub maps_equal
{
	my ($got, $want, $name) = @_;
	my %all = (%$got, %$want);
	my @diffs;
	for my $k (sort keys %all)
	{
		my ($g, $w) = ($got->{$k}, $want->{$k});
		next if defined $g && defined $w && $g eq $w;
		push @diffs, "$k: " . ($g // '(none)') . ' vs ' . ($w // '(none)');
	}
	my $ok = is(scalar(@diffs), 0, "$name (" . scalar(keys %$want) . ' keys)');
	if (!$ok)
	{
		diag(scalar(@diffs) . ' differences, first ones:');
		diag($_) for @diffs[ 0 .. ($#diffs < 9 ? $#diffs : 9) ];
	}
	return $ok;
}

1;

# Cache-vs-table comparison for the redis_sync TAP tests (hash format).
#
#   use RedisSync::Compare;
#   RedisSync::Compare::cache_matches_table($node, $redis,
#       table => 't', prefix => 'k:', key_columns => ['id'],
#       columns => ['id', 'v', 'note'], name => 'cache == table');
#
# Every row of the table must have a Redis hash at prefix || key (key column
# text values joined by ':') whose field set and values equal the row's
# non-NULL synced columns (text output); every hash under the prefix must
# belong to a row (deleted rows: no key).  Version keys ('...:rs_version')
# and the in-flight hash are ignored.
package RedisSync::Compare;

use strict;
use warnings;

use PostgreSQL::Test::Utils ();
use Test::More;
use Time::HiRes qw(time sleep);

my $US = chr(31);    # field separator in both dumps

sub _qi { my $n = shift; $n =~ s/"/""/g; return qq{"$n"}; }
sub _ql { my $s = shift; $s =~ s/'/''/g; return qq{'$s'}; }

# { key => { field => value } } from the table
sub table_dump
{
	my ($node, %o) = @_;
	my $dbname = $o{dbname} // 'postgres';
	my @kc     = @{ $o{key_columns} };
	my @cols   = @{ $o{columns} };
	my $key =
	  _ql($o{prefix}) . " || concat_ws(':', "
	  . join(', ', map { _qi($_) . '::text' } @kc) . ')';
	my $fields = join(
		', ',
		map {
			"CASE WHEN "
			  . _qi($_)
			  . " IS NULL THEN NULL ELSE "
			  . _ql($_)
			  . " || chr(31) || "
			  . _qi($_)
			  . "::text END"
		} @cols);
	my $out = $node->safe_psql($dbname,
		"SELECT concat_ws(chr(31), $key, $fields) FROM $o{table}");
	my %dump;
	for my $line (split /\n/, $out)
	{
		my ($k, @fv) = split /$US/, $line, -1;
		die "odd field list for $k" if @fv % 2;
		$dump{$k} = {@fv};
	}
	return \%dump;
}

my $LUA = <<'LUA';
local out = {}
for _, k in ipairs(redis.call('KEYS', ARGV[1])) do
  if string.sub(k, -11) ~= ':rs_version' and string.sub(k, 1, 19) ~= 'redis_sync:inflight' then
    local t = redis.call('TYPE', k).ok
    local parts = {k}
    if t == 'hash' then
      for _, x in ipairs(redis.call('HGETALL', k)) do parts[#parts + 1] = x end
    else
      parts[#parts + 1] = '<type ' .. t .. '>'
      parts[#parts + 1] = ''
    end
    out[#out + 1] = table.concat(parts, ARGV[2])
  end
end
return table.concat(out, '\n')
LUA

# { key => { field => value } } from Redis (hashes under the prefix)
sub cache_dump
{
	my ($redis, %o) = @_;
	(my $pat = $o{prefix}) =~ s/([*?\[\]\\])/\\$1/g;
	my $out = $redis->cli('--raw', 'EVAL', $LUA, '0', "$pat*", $US);
	my %dump;
	for my $line (split /\n/, $out)
	{
		my ($k, @fv) = split /$US/, $line, -1;
		die "odd field list for $k: $line" if @fv % 2;
		$dump{$k} = {@fv};
	}
	return \%dump;
}

sub _fmt
{
	my $h = shift;
	return '(no key)' unless defined $h;
	return '{' . join(', ', map { "$_=$h->{$_}" } sort keys %$h) . '}';
}

# Returns a list of human-readable differences (empty when equal), plus the
# row count and cache key count.
sub diff_cache_table
{
	my ($node, $redis, %o) = @_;
	my $tab   = table_dump($node, %o);
	my $cache = cache_dump($redis, %o);
	my @diffs;
	my %all = (%$tab, %$cache);
	for my $k (sort keys %all)
	{
		my ($t, $c) = ($tab->{$k}, $cache->{$k});
		next if defined $t && defined $c && _fmt($t) eq _fmt($c);
		push @diffs, "$k: table " . _fmt($t) . " cache " . _fmt($c);
	}
	return (\@diffs, scalar(keys %$tab), scalar(keys %$cache));
}

# Test::More assertion: cache == table; diags up to 10 differences.
sub cache_matches_table
{
	my ($node, $redis, %o) = @_;
	my $name = $o{name} // "cache == table for $o{table}";
	my ($diffs, $nt, $nc) = diff_cache_table($node, $redis, %o);
	my $ok = is(scalar(@$diffs), 0,
		"$name ($nt rows, $nc cache keys)");
	if (!$ok)
	{
		diag(scalar(@$diffs) . " differences, first ones:");
		diag($_) for @$diffs[ 0 .. ($#$diffs < 9 ? $#$diffs : 9) ];
	}
	return $ok;
}

# Call deliver_outbox() until redis_sync.outbox is empty (deadline-bound).
# Returns the total number delivered.
sub drain_outbox
{
	my ($node, %o) = @_;
	my $dbname   = $o{dbname} // 'postgres';
	my $deadline = time + ($o{timeout} // $PostgreSQL::Test::Utils::timeout_default);
	my $total    = 0;
	while (1)
	{
		my $left = $node->safe_psql($dbname, 'SELECT count(*) FROM redis_sync.outbox');
		return $total if $left == 0;
		die "outbox still holds $left entries at the deadline" if time > $deadline;
		my $n = $node->safe_psql($dbname, 'SELECT redis_sync.deliver_outbox()');
		$total += $n;
		sleep 0.05 if $n == 0;    # entries waiting for their next attempt
	}
}

# Poll until the cache equals the table (deadline-bound), then assert it with
# cache_matches_table.  Returns the seconds waited (undef on failure).
#   wait_cache_matches_table($node, $redis, %cmp, timeout => 30, name => ...)
sub wait_cache_matches_table
{
	my ($node, $redis, %o) = @_;
	my $t0       = time;
	my $deadline = $t0 + ($o{timeout} // 30);
	while (1)
	{
		my ($diffs) = diff_cache_table($node, $redis, %o);
		last if !@$diffs || time > $deadline;
		sleep 0.05;
	}
	my $waited = time - $t0;
	return cache_matches_table($node, $redis, %o) ? $waited : undef;
}

# Of the keys <prefix>:1 .. <prefix>:$n, those whose hash field $field
# holds $value, and those missing, counted by one Lua scan in Redis:
#   my ($rolled, $missing) = RedisSync::Compare::field_counts($redis, 't', 900, 'v', '2');
sub field_counts
{
	my ($redis, $prefix, $n, $field, $value) = @_;
	my $r = $redis->cli('EVAL', q{
local with, missing = 0, 0
for id = 1, tonumber(ARGV[1]) do
  local v = redis.call('HGET', ARGV[2] .. ':' .. id, ARGV[3])
  if not v then missing = missing + 1 elseif v == ARGV[4] then with = with + 1 end
end
return with .. ' ' .. missing}, '0', $n, $prefix, $field, $value);
	return split / /, $r;
}

# Deadline loop: call $code until it returns true.  Returns the seconds it
# took, or undef at the deadline (no assertion; the caller asserts).
#   my $secs = RedisSync::Compare::wait_for(sub { ... }, 30);
sub wait_for
{
	my ($code, $timeout, $interval) = @_;
	my $t0       = time;
	my $deadline = $t0 + ($timeout // $PostgreSQL::Test::Utils::timeout_default);
	while (1)
	{
		return time - $t0 if $code->();
		return undef if time > $deadline;
		sleep($interval // 0.02);
	}
}

# One column of redis_sync.worker_stats.
sub worker_stat
{
	my ($node, $col, $dbname) = @_;
	return $node->safe_psql($dbname // 'postgres',
		"SELECT $col FROM redis_sync.worker_stats");
}

# Deadline loop until redis_sync.outbox is empty (the worker delivered it).
# Returns the seconds it took, or undef at the deadline (the caller asserts).
#   ok(defined RedisSync::Compare::wait_outbox_empty($node, 30), '...');
sub wait_outbox_empty
{
	my ($node, $timeout, $interval, $dbname) = @_;
	return wait_for(sub { outbox_depth($node, $dbname) == 0 }, $timeout, $interval);
}

# Number of rows in redis_sync.outbox.
sub outbox_depth
{
	my ($node, $dbname) = @_;
	return $node->safe_psql($dbname // 'postgres',
		'SELECT count(*) FROM redis_sync.outbox');
}

# For tables (id int, v int) too large to dump: what Redis holds, read by
# Redis itself in one script (not the extension), as "n/sum": the number of
# keys <prefix>1..<prefix><hi> with a v field, and the sum of those fields;
# int_sums_table gives the same of the table's rows.
sub int_sums_cache
{
	my ($redis, $prefix, $hi) = @_;
	return $redis->cli('EVAL', qq{
local n, sum = 0, 0
for i = 1, $hi do
  local v = redis.call('HGET', ARGV[1] .. i, 'v')
  if v then n = n + 1; sum = sum + tonumber(v) end
end
return n .. '/' .. sum}, 0, $prefix);
}

sub int_sums_table
{
	my ($node, $table) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) || '/' || coalesce(sum(v), 0) FROM $table");
}

1;

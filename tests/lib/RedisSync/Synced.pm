# The setup most TAP tests share: a table, its sync policy, rows, and the
# comparison of the cache with the table.
#
#   use RedisSync::Synced;
#   my $t = RedisSync::Synced::synced_table($node, 't', prefix => 'k:', rows => 1000);
#       # CREATE TABLE t (id int PRIMARY KEY, v int, note text);
#       # SELECT redis_sync.write_through('t', key_prefix => 'k:');
#       # INSERT INTO t SELECT g, g, 'n' || g FROM generate_series(1, 1000) g;
#   $t->cache_matches($redis, 'initial rows are cached');   # Test::More assertion
#   $t->wait_cache_matches($redis, name => 'caught up', timeout => 30);
#   my ($diffs) = $t->diff($redis);                          # list of differences
#   RedisSync::Compare::cache_matches_table($node, $redis, $t->cmp, name => ...);
#   RedisSync::Synced::count_keys($redis, 't:*');            # data keys only
#
# synced_table($node, $name, %options):
#   columns  => 'id int PRIMARY KEY, v int, note text'   the column list (default)
#   policy   => 'write_through' | 'invalidate' | 'write_behind' (default write_through)
#   prefix   => key prefix (default "$name:")
#   with     => more arguments of the policy call, SQL text ("consistency => 'strict'")
#   rows     => N: INSERT the default columns' rows (g, g, 'n' || g), g = 1..N
#   fill     => a query whose rows are inserted instead (SELECT ... FROM generate_series ...)
#   fill_first => 1: insert before syncing (then the background warm caches them)
#   sql      => more SQL run after all that, in the same call
#   key_columns, compare_columns: what the comparison reads (default: the
#            PRIMARY KEY and every column of the column list)
#   dbname   => database (default postgres)
# The comparison is RedisSync::Compare's: every row has a hash at prefix ||
# key whose fields equal its non-NULL columns, and no other hash is there.
package RedisSync::Synced;

use strict;
use warnings;

use RedisSync::Compare;

my $DEFAULT_COLUMNS = 'id int PRIMARY KEY, v int, note text';

sub _ql { my $s = shift; $s =~ s/'/''/g; return qq{'$s'}; }

# column names and primary key columns of a CREATE TABLE column list
sub _parse_columns
{
	my ($spec) = @_;
	my @parts;
	my ($depth, $quoted, $cur) = (0, 0, '');
	for my $ch (split //, $spec)
	{
		$quoted = !$quoted if $ch eq '"';
		$depth++ if $ch eq '(' && !$quoted;
		$depth-- if $ch eq ')' && !$quoted;
		if ($ch eq ',' && $depth == 0 && !$quoted) { push @parts, $cur; $cur = ''; next; }
		$cur .= $ch;
	}
	push @parts, $cur if $cur =~ /\S/;
	my (@cols, @keys);
	for my $p (@parts)
	{
		$p =~ s/^\s+|\s+$//g;
		if ($p =~ /^PRIMARY\s+KEY\s*\(([^)]*)\)/i)
		{
			push @keys, map { s/^\s+|\s+$//gr } split /,/, $1;
			next;
		}
		next if $p =~ /^(CONSTRAINT|UNIQUE|CHECK|FOREIGN|EXCLUDE|LIKE)\b/i;
		my ($name) = $p =~ /^("(?:[^"]|"")*"|\S+)/;
		$name = substr($name, 1, -1) =~ s/""/"/gr if $name =~ /^"/;   # Compare quotes names itself
		push @cols, $name;
		push @keys, $name if $p =~ /\bPRIMARY\s+KEY\b/i;
	}
	return (\@cols, \@keys);
}

sub synced_table
{
	my ($node, $name, %o) = @_;
	my $dbname  = $o{dbname} // 'postgres';
	my $columns = $o{columns} // $DEFAULT_COLUMNS;
	my $policy  = $o{policy} // 'write_through';
	my $prefix  = $o{prefix} // "$name:";
	my ($cols, $keys) = _parse_columns($columns);

	my $fill;
	if (defined $o{fill}) { $fill = "INSERT INTO $name $o{fill};\n"; }
	elsif ($o{rows})
	{
		die "synced_table: rows => N needs the default columns (or give fill)"
		  if $columns ne $DEFAULT_COLUMNS;
		$fill = "INSERT INTO $name SELECT g, g, 'n' || g FROM generate_series(1, $o{rows}) g;\n";
	}
	my $sync = "SELECT redis_sync.$policy('$name', key_prefix => " . _ql($prefix)
	  . (defined $o{with} ? ", $o{with}" : '') . ");\n";
	my $sql = "CREATE TABLE $name ($columns);\n";
	$sql .= $fill if $fill && $o{fill_first};
	$sql .= $sync;
	$sql .= $fill if $fill && !$o{fill_first};
	$sql .= "$o{sql}\n" if defined $o{sql};
	$node->safe_psql($dbname, $sql);

	return bless {
		node        => $node,
		dbname      => $dbname,
		table       => $name,
		prefix      => $prefix,
		key_columns => $o{key_columns} // $keys,
		columns     => $o{compare_columns} // $cols,
	}, 'RedisSync::Synced::Table';
}

# keys matching $pattern, version keys left out (SCAN, not KEYS)
sub count_keys
{
	my ($redis, $pattern, $count) = @_;
	my ($n, $cursor) = (0, 0);
	do
	{
		my @r = split /\n/,
		  $redis->cli('SCAN', $cursor, 'MATCH', $pattern, 'COUNT', $count // 1000);
		$cursor = shift @r;
		$n += grep { !/:rs_version$/ } @r;
	} while ($cursor ne '0');
	return $n;
}

package RedisSync::Synced::Table;

use strict;
use warnings;

sub name   { return $_[0]->{table}; }
sub prefix { return $_[0]->{prefix}; }

# the options RedisSync::Compare's functions take
sub cmp
{
	my ($self) = @_;
	return (
		table       => $self->{table},
		prefix      => $self->{prefix},
		key_columns => $self->{key_columns},
		columns     => $self->{columns},
		dbname      => $self->{dbname});
}

# $t->cache_matches($redis, 'name') or ($redis, name => ..., ...): the
# options of RedisSync::Compare::cache_matches_table
sub cache_matches
{
	my ($self, $redis, @o) = @_;
	unshift @o, 'name' if @o % 2;
	return RedisSync::Compare::cache_matches_table($self->{node}, $redis,
		$self->cmp, @o);
}

# likewise, polling until equal (timeout => seconds, default 30)
sub wait_cache_matches
{
	my ($self, $redis, @o) = @_;
	unshift @o, 'name' if @o % 2;
	return RedisSync::Compare::wait_cache_matches_table($self->{node}, $redis,
		$self->cmp, @o);
}

sub diff
{
	my ($self, $redis) = @_;
	return RedisSync::Compare::diff_cache_table($self->{node}, $redis, $self->cmp);
}

1;

#!/usr/bin/perl
# Extract the SQL examples of README.md for the "readme" suite of
# tests/run_tests.sh.
#
#   perl tests/readme_blocks.pl README.md OUTDIR
#
# Every fenced block whose info string is exactly "sql" is written, in the
# order of the file, to OUTDIR/NNN.sql (NNN from 001), and one line
# "NNN LINE" (LINE: the README line of its opening fence) is printed per
# block.  Blocks marked "sql norun" (examples that cannot run in the plain
# sandbox: TLS certificates, a cluster, a second database, ...) are skipped
# and listed on stderr; so are blocks of any other language.
use strict;
use warnings;

my ($readme, $outdir) = @ARGV;
die "usage: $0 README.md OUTDIR\n" unless defined $outdir;
open my $in, '<', $readme or die "$readme: $!\n";
-d $outdir or mkdir $outdir or die "$outdir: $!\n";

my ($n, $fence, $info, $start, @body) = (0);
while (my $line = <$in>)
{
	if (!defined $fence)
	{
		# a fence: up to 3 spaces of indentation (CommonMark), then ``` or ~~~
		next unless $line =~ /^ {0,3}(```+|~~~+)\s*(.*?)\s*$/;
		($fence, $info, $start, @body) = ($1, $2, $., ());
		next;
	}
	if ($line =~ /^ {0,3}\Q$fence\E\s*$/)
	{
		if ($info eq 'sql')
		{
			my $file = sprintf('%s/%03d.sql', $outdir, ++$n);
			open my $out, '>', $file or die "$file: $!\n";
			print $out "-- README.md line $start\n", @body;
			close $out or die "$file: $!\n";
			printf "%03d %d\n", $n, $start;
		}
		elsif ($info =~ /^sql\s+norun$/)
		{
			print STDERR "README.md line $start: sql norun, skipped\n";
		}
		elsif ($info =~ /^sql\b/)
		{
			die "README.md line $start: unknown info string '$info' (sql or sql norun)\n";
		}
		undef $fence;
		next;
	}
	push @body, $line;
}
die "README.md: block opened at line $start is not closed\n" if defined $fence;
die "README.md: no sql blocks\n" unless $n;

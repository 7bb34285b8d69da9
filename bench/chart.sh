#!/usr/bin/env bash
# Draw the benchmark curves as SVG charts (gnuplot) from the figures of the
# last run, bench/results/latest.json:
#
#   bench/charts/scale.svg   cost per row by transaction size, synced and
#                            unsynced (section 6 of bench.pl), log-log
#   bench/charts/lag.svg     async commit-to-Redis lag by percentile over
#                            every run (section 4)
#
#   bash bench/chart.sh      (bench/run.sh calls it after a full run)
#
# Needs gnuplot (Debian: gnuplot-nox); run as root without it, the script
# installs it, otherwise it says so and leaves the charts as they are.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JSON="$BENCH_DIR/results/latest.json"
OUT="$BENCH_DIR/charts"

if ! command -v gnuplot >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y gnuplot-nox >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 && apt-get install -y gnuplot-nox >/dev/null 2>&1; } || true
    fi
    if ! command -v gnuplot >/dev/null 2>&1; then
        echo "chart: gnuplot not found (apt-get install gnuplot-nox); charts not drawn" >&2
        exit 0
    fi
fi
[ -f "$JSON" ] || { echo "chart: no $JSON (run bench/run.sh first)" >&2; exit 1; }

DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
mkdir -p "$OUT"

# the figures as gnuplot data files; prints the run's commit for the titles
COMMIT=$(perl -MJSON::PP -e '
    my ($json, $dir) = @ARGV;
    local $/;
    open(my $f, "<", $json) or die "$json: $!";
    my $r = JSON::PP->new->decode(<$f>);
    my $d = $r->{detail};
    if ($d->{scale}) {
        open(my $o, ">", "$dir/scale.dat") or die;
        printf $o "%d %.4f %.4f\n", @{$_}{qw(rows unsynced_us_per_row synced_us_per_row)} for @{ $d->{scale} };
    }
    if ($d->{lag} && $d->{lag}{cdf_ms}) {
        open(my $o, ">", "$dir/lag.dat") or die;
        my $i = 0;
        printf $o "%d %.4f\n", ++$i, $_ for @{ $d->{lag}{cdf_ms} };
    }
    (my $c = $r->{commit}) =~ s/,.*//;
    print $c;
' "$JSON" "$DATA")

if [ -f "$DATA/scale.dat" ]; then
    gnuplot <<GP
set terminal svg size 720,420 font "sans,12" background rgb "white"
set output "$OUT/scale.svg"
set title "Cost per row by transaction size (UPDATE, pgbench -c1, sc=off; commit $COMMIT)"
set xlabel "rows per transaction"
set ylabel "microseconds per row"
set logscale xy
set grid
set key top right
plot "$DATA/scale.dat" using 1:2 with linespoints lw 2 pt 7 title "unsynced", \
     "$DATA/scale.dat" using 1:3 with linespoints lw 2 pt 5 title "write_through (sync push)"
GP
    echo "chart: wrote bench/charts/scale.svg"
fi
if [ -f "$DATA/lag.dat" ]; then
    gnuplot <<GP
set terminal svg size 720,420 font "sans,12" background rgb "white"
set output "$OUT/lag.svg"
set title "Async delivery: commit-to-Redis lag by percentile (commit $COMMIT)"
set xlabel "percentile"
set ylabel "milliseconds"
set logscale y
set grid
set key top left
set xrange [1:100]
plot "$DATA/lag.dat" using 1:2 with lines lw 2 title "lag (every change of every run)"
GP
    echo "chart: wrote bench/charts/lag.svg"
fi

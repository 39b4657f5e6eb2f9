#!/usr/bin/env bash
# Turns missive-load's --csv output into a PNG: throughput and latency percentiles per second.
#   benchmarks/plot-load.sh load.csv load.png
# Needs gnuplot (Debian: apt-get install gnuplot-nox).
set -euo pipefail
csv=${1:?usage: plot-load.sh LOAD.csv OUT.png}
png=${2:?usage: plot-load.sh LOAD.csv OUT.png}
command -v gnuplot >/dev/null || { echo "plot-load.sh: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 2; }
gnuplot <<GP
set datafile separator ','
set terminal pngcairo size 1200,800 noenhanced
set output '$png'
set multiplot layout 2,1 title 'missive-load: $(basename "$csv")'
set grid
set key outside right
set ylabel 'messages / s'
plot '$csv' using 1:3 skip 1 with lines lw 2 title 'acked', \
     '' using 1:4 skip 1 with lines lw 2 title 'delivered'
set xlabel 'second'
set ylabel 'latency (ms)'
set logscale y
plot '$csv' using 1:(\$5>0?\$5:1/0) skip 1 with lines lw 2 title 'p50', \
     '' using 1:(\$6>0?\$6:1/0) skip 1 with lines lw 2 title 'p90', \
     '' using 1:(\$7>0?\$7:1/0) skip 1 with lines lw 2 title 'p99', \
     '' using 1:(\$8>0?\$8:1/0) skip 1 with lines lw 2 title 'p99.9', \
     '' using 1:(\$9>0?\$9:1/0) skip 1 with lines lw 1 title 'max'
unset multiplot
GP
echo "wrote $png"

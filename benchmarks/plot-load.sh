#!/usr/bin/env bash
# Turns missive-load's --csv output into a PNG: throughput and latency percentiles per second,
# and, when the run had --server-pid, the server's RSS and the server's and tool's CPU.
#   benchmarks/plot-load.sh load.csv load.png
# Needs gnuplot (Debian: apt-get install gnuplot-nox).
set -euo pipefail
csv=${1:?usage: plot-load.sh LOAD.csv OUT.png}
png=${2:?usage: plot-load.sh LOAD.csv OUT.png}
command -v gnuplot >/dev/null || { echo "plot-load.sh: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 2; }
# A third panel, the server's memory and CPU, when the run had --server-pid (column 10 filled).
panels=2 height=800
if awk -F, 'NR > 1 && $10 != "" { found = 1; exit } END { exit !found }' "$csv"; then
  panels=3 height=1100
fi
gnuplot <<GP
set datafile separator ','
set terminal pngcairo size 1200,$height noenhanced
set output '$png'
set multiplot layout $panels,1 title 'missive-load: $(basename "$csv")'
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
if ($panels == 3) {
  unset logscale y
  set yrange [0:*]
  set y2range [0:*]
  set ylabel 'server RSS (MiB)'
  set y2label 'CPU (% of a core)'
  set y2tics
  set ytics nomirror
  plot '$csv' using 1:(\$10/1024) skip 1 with lines lw 2 title 'server RSS', \
       '' using 1:11 skip 1 axes x1y2 with lines lw 1 title 'server CPU', \
       '' using 1:12 skip 1 axes x1y2 with lines lw 1 title 'tool CPU'
}
unset multiplot
GP
echo "wrote $png"

# Sourced by bars.sh and compare-mosquitto.sh.
# On a VM the hypervisor may run other guests on our cores: /proc/stat counts that time as
# "steal". A few percent of it, taken in slices of milliseconds, is a p99 of milliseconds on an
# otherwise idle server (BENCHMARKS.md, "Session 14"), so every run reports it.

# The machine's CPU time counters (all cores, in clock ticks): /proc/stat's first line.
cpu_times() {
  head -1 /proc/stat
}

# steal_percent BEFORE AFTER: of all CPU time between two cpu_times samples, the share stolen.
# Fields: cpu user nice system idle iowait irq softirq steal (guest time is inside user/nice).
steal_percent() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    split(a, x); split(b, y)
    for (i = 2; i <= 9; i++) total += y[i] - x[i]
    printf "%.1f", (total > 0 ? 100 * (y[9] - x[9]) / total : 0) }'
}

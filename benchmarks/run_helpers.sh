# Sourced by bars.sh and compare-mosquitto.sh: what both read off a run.

cpu_ticks() { # utime + stime of a process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
field() { # json file, name: the first number after "name":
  grep -o "\"$2\": [0-9.]*" "$1" | head -1 | grep -o '[0-9.]*$'
}
within() { # json file, object, name: a number inside "object": {…}
  grep -o "\"$2\": {[^}]*}" "$1" | grep -o "\"$3\": [0-9.]*" | grep -o '[0-9.]*$'
}
hz=$(getconf CLK_TCK)

# On a VM /proc/stat counts "steal": time a vCPU was ready but the hypervisor ran something
# else, another guest or, on some hosts, the waking of an idle vCPU (BENCHMARKS.md, "Session
# 14"). Every run reports its share, so that latencies are compared between runs alike in it.

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

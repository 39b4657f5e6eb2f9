# Sourced by the benchmark scripts: what they read off a run, and what they share.

# need_built SCRIPT BINARY...: exits with status 2 (and says so) unless every binary is built.
need_built() {
  local script=$1 bin
  shift
  for bin in "$@"; do
    [ -x "$bin" ] || { echo "$script: $bin is missing: build first (make build)" >&2; exit 2; }
  done
}

# work_dir: a fresh temporary directory in `work`, removed on exit together with the server
# whose pid is in `pid` (empty while none runs).
work_dir() {
  work=$(mktemp -d)
  pid=
  trap 'if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
}

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

# run_sampled COMMAND...: runs a load tool until it ends, sampling its CPU time while it runs
# (its /proc entry is gone once it exits); sets `tool_ticks`. Its exit status is ignored: the
# figures are in its JSON.
run_sampled() {
  "$@" &
  local tool=$!
  tool_ticks=0
  while kill -0 "$tool" 2>/dev/null; do
    tool_ticks=$(cpu_ticks "$tool" 2>/dev/null || echo "$tool_ticks")
    sleep 0.1
  done
  wait "$tool" || true
}

# On a VM /proc/stat counts "steal": time a vCPU was ready but the hypervisor ran something
# else. It comes and goes with the host's other load, and latency with it (BENCHMARKS.md,
# "Session 14"): every run reports its share, so that latencies are compared between runs alike
# in it.

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

#!/usr/bin/env bash
# Measures issue 4's bars on this machine with the built binaries, each run against a fresh
# server on a free loopback port with a fresh database, and prints one line per run:
#
#   machine    the CPU, loopback round trip and append + fdatasync (what every figure rides on),
#              a null system call and a sort (what tells one host from another), and the
#              percentiles of the write-ahead log's durable page write, back to back and one
#              per millisecond (what sets a lightly loaded server's latency), and the rare slow
#              one among 10,000 (the floor under bar 2's p99.9: every message waits for one)
#   bar 1      closed loop, 1000 users x 50 messages, window 10, 64-byte bodies, sync; then
#              once sustained, 1000 x 1000 (about 25 s, through memtable flushes and compactions)
#   bar 2      open loop, 10,000 msg/s for 10 s, 1000 users; CPU per message of each process and
#              the second with the highest p99; on the sustained run's database, restarted (a
#              server with history): at once, and settled (its compactions done); then on fresh
#              ones
#   bar 2 capacity  the open loop climbing in steps of RATE/10 (10 s each) to RATE, on a fresh
#              server: the highest step within p99 5 ms and p99.9 20 ms, and each step's figures;
#              one ramp per run, and with several the median
#   bar 4      a device catching up a 10,000-entry backlog (rate limit off for the senders)
#
# Bar 3 (50,000 devices) needs more open files than most machines allow; see BENCHMARKS.md.
#
#   benchmarks/bars.sh [BUILD_DIR] [RUNS] [RATE]   (defaults: build, 3, 10000)
#
# RATE is the open loop's: the bar's is 10,000/s; a host that cannot carry it (its CPU per
# message times the rate is more than its cores) measures an overloaded server there, and a
# lower rate tells more about it.
#
# Figures only: nothing here passes or fails. Every loop is bounded in runs and time, and all
# traffic stays on 127.0.0.1.
set -euo pipefail
build=${1:-build}
runs=${2:-3}
rate=${3:-10000}
server=$build/apps/missive-server
load=$build/apps/missive-load
machine=$(realpath -m "$build/benchmarks/missive_machine_bench") # absolute: it runs in $work
source "$(dirname "$0")/run_helpers.sh"
need_built bars "$server" "$load" "$machine"
work_dir
printf 'password-hash = min\n' > "$work/load.conf"
printf 'password-hash = min\nrate-limit-per-second = 0\n' > "$work/norate.conf"

source "$(dirname "$0")/../tests/support/start_server.sh"
start_server() { # config file; a fresh database; sets pid and address
  rm -rf "$work/data"
  # The previous run's files are freed now, not during this one: on a disk mounted with
  # `discard` the journal's next commit trims them, and every sync waits tens of ms for it.
  sync
  start_server_in "$server" "$1" "$work"
}

cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
(cd "$work" && "$machine" 2>/dev/null) | awk -v cpu="${cpu:-unknown}" '
  /BM_loopback_round_trip/ { rtt = $2 / 1000 }
  /BM_append_fdatasync/ { sync = $2 / 1000 }
  /BM_null_syscall/ { sc = $2 }
  /BM_sort_64k/ { sort = $2 / 1000 }
  function us(field,   v) { # a counter such as p99_us=1.92809k, in µs
    v = substr(field, index(field, "=") + 1)
    return v ~ /k$/ ? v * 1000 : v + 0
  }
  /BM_dsync_write\/0\// { for (i = 1; i <= NF; i++) {
      if ($i ~ /^p50_us=/) b50 = us($i); if ($i ~ /^p99_us=/) b99 = us($i) } }
  /BM_dsync_write\/1000\// { for (i = 1; i <= NF; i++) {
      if ($i ~ /^p50_us=/) p50 = us($i); if ($i ~ /^p99_us=/) p99 = us($i) } }
  /BM_dsync_write_tail\// { for (i = 1; i <= NF; i++) {
      if ($i ~ /^p999_us=/) t999 = us($i); if ($i ~ /^max_us=/) tmax = us($i)
      if ($i ~ /^over_5ms=/) t5 = us($i) } }
  END { printf "machine: %s; loopback round trip %.1f us, append + fdatasync %.1f us, " \
               "null syscall %.0f ns, sort of 64 Ki ints %.1f ms; durable page write p50/p99 " \
               "%.0f/%.0f us back to back, %.0f/%.0f us one per ms; of 10,000 one per 0.5 ms " \
               "p99.9 %.1f ms, max %.1f ms, %d over 5 ms\n",
               cpu, rtt, sync, sc, sort, b50, b99, p50, p99, t999 / 1000, tmax / 1000, t5 }'

for i in $(seq "$runs"); do
  start_server "$work/load.conf"
  "$load" --server "$address" --users 1000 --messages 50 --window 10 --body 64 \
    --json "$work/closed.json" > /dev/null 2>&1 || true
  stop_server
  printf 'bar 1 run %d: %s delivered msg/s (bar 40000), lost %s, duplicated %s\n' "$i" \
    "$(field "$work/closed.json" throughput_msgs_per_s)" "$(field "$work/closed.json" lost)" \
    "$(field "$work/closed.json" duplicated)"
done

open_loop() { # label, extra flags: one open-loop run against the running server, stopped after
  local label=$1
  shift
  before=$(cpu_ticks "$pid")
  local times_before
  times_before=$(cpu_times)
  run_sampled "$load" --server "$address" --scenario open --rate "$rate" --duration 10 \
    --users 1000 --body 64 "$@" --json "$work/open.json" --csv "$work/open.csv" > /dev/null 2>&1
  after=$(cpu_ticks "$pid")
  stolen=$(steal_percent "$times_before" "$(cpu_times)")
  stop_server
  delivered=$(field "$work/open.json" delivered)
  printf '%s, %s/s: p50 %s, p99 %s (bar 5), p99.9 %s ms (bar 20); lost %s, duplicated %s; ' \
    "$label" "$rate" "$(within "$work/open.json" latency_ms p50)" \
    "$(within "$work/open.json" latency_ms p99)" "$(within "$work/open.json" latency_ms p999)" \
    "$(field "$work/open.json" lost)" "$(field "$work/open.json" duplicated)"
  awk -v s=$((after - before)) -v t="$tool_ticks" -v n="${delivered:-1}" -v hz="$hz" \
    'BEGIN { printf "CPU per message: server %.0f us, tool %.0f us (logins included)",
             s * 1e6 / hz / n, t * 1e6 / hz / n }'
  # Which second set the tail: a stall shows as one second far above the others.
  awk -F, 'NR > 1 && $7 + 0 > worst { worst = $7 + 0; at = $1; max = $9 }
    END { printf "; worst second %s: p99 %.1f, max %.1f ms", at, worst, max }' "$work/open.csv"
  printf '; CPU stolen by the host %s%%\n' "$stolen"
}

start_server "$work/load.conf"
"$load" --server "$address" --users 1000 --messages 1000 --window 10 --body 64 \
  --json "$work/sustained.json" > /dev/null 2>&1 || true
stop_server
printf 'bar 1 sustained: %s delivered msg/s, p99 %s ms, max %s ms; lost %s, duplicated %s\n' \
  "$(field "$work/sustained.json" throughput_msgs_per_s)" \
  "$(within "$work/sustained.json" latency_ms p99)" \
  "$(within "$work/sustained.json" latency_ms max)" \
  "$(field "$work/sustained.json" lost)" "$(field "$work/sustained.json" duplicated)"

# Once more on the sustained run's database, kept: a server in service holds history (there,
# each user ≈ 1,000 sends and 2,000 entries), and the first seconds after its restart read it.
# The devices start at their mailbox's max seq (--history skip), so the run is the open loop,
# not the catch-up of what is stored. Right after the restart LevelDB also pays the
# compactions the sustained run put off (hundreds of MB); then again, restarted once it has
# finished them, which is the history alone.
settle() { # until LevelDB's log has been quiet for 5 s (at most 180 s): its compactions done
  for _ in $(seq 180); do
    sleep 1
    [ $(($(date +%s) - $(stat -c %Y "$work/data/LOG"))) -ge 5 ] && return
  done
}
sync
start_server_in "$server" "$work/load.conf" "$work"
open_loop "bar 2 with history, at once" --history skip
start_server_in "$server" "$work/load.conf" "$work"
settle
open_loop "bar 2 with history, settled" --history skip

for i in $(seq "$runs"); do
  start_server "$work/load.conf"
  open_loop "bar 2 run $i"
done

# Bar 2 as a capacity: the open loop climbing in steps of RATE/10, 10 s each, up to RATE, on a
# fresh server, until a step misses p99 <= 5 or p99.9 <= 20 ms (missive-load's ramp): the
# highest rate this host carries within the bar, and each step's figures. One ramp per run: a
# target this close to a VM's tail makes one ramp's capacity noise ("Session 22"), so with
# several runs the median is printed too.
step=$(awk -v r="$rate" 'BEGIN { print r / 10 }')
capacities=()
for i in $(seq "$runs"); do
  start_server "$work/load.conf"
  "$load" --server "$address" --scenario ramp --rate "$step" --rate-step "$step" \
    --rate-max "$rate" --duration 10 --users 1000 --body 64 --target-ms 5,20 \
    --json "$work/ramp.json" > /dev/null 2>&1 || true
  stop_server
  capacities+=("$(field "$work/ramp.json" capacity_msgs_per_s)")
  printf 'bar 2 capacity run %s: %s msg/s within p99 5, p99.9 20 ms' "$i" "${capacities[-1]}"
  printf ' (steps of %s/s, 10 s each, to %s/s):' "$step" "$rate"
  grep -o '{"rate": [^}]*}' "$work/ramp.json" | awk '
    function value(name,   m) { # the value after "name": in this step
      m = substr($0, index($0, "\"" name "\": ") + length(name) + 4)
      sub(/[,}].*/, "", m)
      return m
    }
    {
      verdict = value("carried") == "true" ? "carried" : "over"
      if (value("whole") == "false")
        verdict = "cut short"
      printf "%s %s/s p99 %s, p99.9 %s %s", (NR > 1 ? ";" : ""), value("rate"), value("p99"),
        value("p999"), verdict
    }
    END { printf "\n" }'
done
if [ "$runs" -gt 1 ]; then
  median=$(printf '%s\n' "${capacities[@]}" | sort -n | awk '{ v[NR] = $1 }
    END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
  echo "bar 2 capacity, median of $runs ramps: $median msg/s"
fi

start_server "$work/norate.conf"
"$load" --server "$address" --scenario backlog --users 2 --messages 10000 --window 100 \
  --prefix backlog --json "$work/backlog.json" > /dev/null 2>&1 || true
stop_server
printf 'bar 4: a device caught up %s entries in %s ms (bar 100); lost %s, duplicated %s\n' \
  "$(field "$work/backlog.json" backlog_entries)" "$(within "$work/backlog.json" catchup_ms max)" \
  "$(field "$work/backlog.json" lost)" "$(field "$work/backlog.json" duplicated)"

#!/usr/bin/env bash
# Where the server's CPU goes, thread by thread: a fresh server on a free loopback port with a
# fresh database, an open loop of missive-load at RATE msg/s (1000 users, 64-byte bodies) for
# SECONDS, and each server thread's CPU time and context switches per delivered message over
# the middle of the run (from 5 s in, for SECONDS - 10 s):
#
#   benchmarks/threads.sh [BUILD_DIR] [RATE] [SECONDS] [CONFIG]   (defaults: build, 5000, 15)
#
# Thread names: the gateway's event loops carry the server's name, CAF's workers are
# `caf.multiplexer`, the persistence actor's thread (detached) `caf.actor`. SERVER=path runs
# another server binary with the same load tool (an A/B against an older build: alternate the
# two in one sitting, and compare runs alike in the CPU time the host stole, printed last).
# LOAD_FLAGS adds flags to missive-load's run (e.g. LOAD_FLAGS="--peers 16").
#
# Figures only: nothing here passes or fails. The run is bounded in time, and all traffic
# stays on 127.0.0.1.
set -euo pipefail
build=${1:-build}
rate=${2:-5000}
seconds=${3:-15}
config=${4:-}
server=${SERVER:-$build/apps/missive-server}
load=$build/apps/missive-load
[ "$seconds" -ge 11 ] || { echo "threads: SECONDS must be at least 11" >&2; exit 2; }
source "$(dirname "$0")/run_helpers.sh"
need_built threads "$server" "$load"
work_dir
if [ -z "$config" ]; then
  config=$work/load.conf
  printf 'password-hash = min\n' > "$config"
fi

source "$(dirname "$0")/../tests/support/start_server.sh"
sync # the last run's freed blocks are trimmed now, not during this one (see bars.sh)
start_server_in "$server" "$config" "$work"

# One line per thread: tid, name, CPU ticks, context switches (voluntary and not).
threads() {
  for t in /proc/"$pid"/task/*; do
    printf '%s %s %s %s\n' "$(basename "$t")" "$(tr ' ' _ < "$t/comm")" \
      "$(awk '{print $14 + $15}' "$t/stat")" \
      "$(awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s}' "$t/status")"
  done 2>/dev/null | sort
}

"$load" --server "$address" --scenario open --rate "$rate" --duration "$seconds" --users 1000 \
  --body 64 ${LOAD_FLAGS:-} --json "$work/run.json" > "$work/load.out" 2>&1 &
tool=$!
window=$((seconds - 10))
sleep 5
threads > "$work/before"
cpu0=$(cpu_times)
sleep "$window"
threads > "$work/after"
cpu1=$(cpu_times)
wait "$tool" || true

echo "server threads at $rate msg/s, per message over ${window} s:"
join "$work/before" "$work/after" | awk -v rate="$rate" -v window="$window" -v hz="$hz" '{
    us = ($6 - $3) * 1e6 / hz / (window * rate); cs = ($7 - $4) / (window * rate)
    total_us += us; total_cs += cs
    if (us >= 0.5 || cs >= 0.05)
      printf "  %-8s %-18s %7.1f us %6.2f switches\n", $1, $2, us, cs
  } END { printf "  total                       %7.1f us %6.2f switches\n", total_us, total_cs }'
grep "latency ms" "$work/load.out" || { cat "$work/load.out"; exit 1; }
echo "delivered $(field "$work/run.json" delivered), lost $(field "$work/run.json" lost)," \
  "duplicated $(field "$work/run.json" duplicated); CPU stolen by the host" \
  "$(steal_percent "$cpu0" "$cpu1")%"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

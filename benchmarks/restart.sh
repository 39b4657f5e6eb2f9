#!/usr/bin/env bash
# A restart after a saturating load, on one saved database: a closed loop of 1000 users x
# MESSAGES (window 10, 64-byte bodies) on a fresh server of BUILD_DIR, which is then stopped and
# its database kept. Then, RUNS times, a server on a fresh copy of that database and at once an
# open loop at RATE msg/s for 12 s (--history skip: the devices start at their mailbox's max
# seq). Each run prints p50/p99/p99.9, the worst second's p99, the compactions LevelDB began
# during it and the server's CPU time:
#
#   benchmarks/restart.sh [BUILD_DIR] [RUNS] [RATE] [MESSAGES]   (defaults: build, 2, 5000, 1000)
#
# SERVER=path restarts another server binary on the copies (an A/B: both builds start from the
# same database, made by BUILD_DIR's server). Figures only; nothing passes or fails. Bounded in
# time, all traffic on 127.0.0.1. BENCHMARKS.md, "Session 18".
set -euo pipefail
build=${1:-build}
runs=${2:-2}
rate=${3:-5000}
messages=${4:-1000}
server=${SERVER:-$build/apps/missive-server}
load=$build/apps/missive-load
source "$(dirname "$0")/run_helpers.sh"
need_built restart "$build/apps/missive-server" "$server" "$load"
source "$(dirname "$0")/../tests/support/start_server.sh"
work_dir
printf 'password-hash = min\n' > "$work/load.conf"

mkdir "$work/saved"
start_server_in "$build/apps/missive-server" "$work/load.conf" "$work/saved"
"$load" --server "$address" --users 1000 --messages "$messages" --window 10 --body 64 \
  --json "$work/closed.json" > /dev/null 2>&1 || true
stop_server
printf 'saved: 1000 x %s closed loop, %s delivered msg/s; lost %s, duplicated %s\n' "$messages" \
  "$(field "$work/closed.json" throughput_msgs_per_s)" "$(field "$work/closed.json" lost)" \
  "$(field "$work/closed.json" duplicated)"

for i in $(seq "$runs"); do
  rm -rf "$work/run"
  mkdir "$work/run"
  cp -a "$work/saved/data" "$work/run/data"
  sync # the copy's writeback happens now, not during the run
  start_server_in "$server" "$work/load.conf" "$work/run"
  before=$(cpu_ticks "$pid")
  "$load" --server "$address" --scenario open --rate "$rate" --duration 12 --users 1000 \
    --body 64 --history skip --json "$work/open.json" --csv "$work/open.csv" > /dev/null 2>&1 \
    || true
  after=$(cpu_ticks "$pid")
  # LevelDB starts a new LOG at every open.
  compactions=$(grep -c "Compacting" "$work/run/data/LOG" || true)
  stop_server
  printf 'restart %d, %s/s at once: p50 %s, p99 %s, p99.9 %s ms; lost %s, duplicated %s; ' "$i" \
    "$rate" "$(within "$work/open.json" latency_ms p50)" \
    "$(within "$work/open.json" latency_ms p99)" "$(within "$work/open.json" latency_ms p999)" \
    "$(field "$work/open.json" lost)" "$(field "$work/open.json" duplicated)"
  awk -F, 'NR > 1 && $7 + 0 > worst { worst = $7 + 0; at = $1 }
    END { printf "worst second %s: p99 %.1f ms; ", at, worst }' "$work/open.csv"
  awk -v s=$((after - before)) -v hz="$hz" -v c="$compactions" \
    'BEGIN { printf "compactions begun %d, server CPU %.1f s\n", c, s / hz }'
done

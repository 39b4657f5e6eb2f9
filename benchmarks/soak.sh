#!/usr/bin/env bash
# Does the server hold steady over a long run? A fresh server of BUILD_DIR and an open loop of
# RATE msg/s (1000 users, 64-byte bodies) for MINUTES, with the server's memory and CPU
# sampled every second (missive-load --server-pid --csv). Prints a line per minute: delivered
# msg/s, the worst second's p99 and p99.9, the server's RSS at the minute's end, server and
# tool CPU per message; then the server's open files and data directory at the end, and the
# run's lost and duplicated:
#
#   benchmarks/soak.sh [BUILD_DIR] [RATE] [MINUTES]   (defaults: build, 3000, 20)
#
# CSV=path keeps the per-second series (benchmarks/plot-load.sh draws it, memory and CPU in a
# third panel). CONFIG='key = value' adds settings (one per line); SERVER=path runs another
# server binary. Figures only; nothing passes or fails. Bounded in time (MINUTES plus the
# drain), all traffic on 127.0.0.1. BENCHMARKS.md, "Session 24".
set -euo pipefail
build=${1:-build}
rate=${2:-3000}
minutes=${3:-20}
server=${SERVER:-$build/apps/missive-server}
load=$build/apps/missive-load
source "$(dirname "$0")/run_helpers.sh"
need_built soak "$server" "$load"
source "$(dirname "$0")/../tests/support/start_server.sh"
work_dir
printf 'password-hash = min\n%s\n' "${CONFIG:-}" > "$work/soak.conf"

sync # the last run's freed blocks are trimmed now, not during this one (see bars.sh)
start_server_in "$server" "$work/soak.conf" "$work"
fds_start=$(ls "/proc/$pid/fd" | wc -l)
cpu0=$(cpu_times)
"$load" --server "$address" --scenario open --rate "$rate" --duration $((minutes * 60)) \
  --users 1000 --body 64 --server-pid "$pid" --csv "$work/soak.csv" --json "$work/soak.json" \
  > "$work/load.out" 2>&1 || true
cpu1=$(cpu_times)
# The devices are gone: their connections close within moments (at most 10 s are waited for).
for _ in $(seq 100); do
  fds_end=$(ls "/proc/$pid/fd" | wc -l)
  [ "$fds_end" -gt "$fds_start" ] || break
  sleep 0.1
done
data_mib=$(du -sm "$work/data" | cut -f1)
tables=$(find "$work/data" -name '*.ldb' | wc -l)
stop_server
[ -n "${CSV:-}" ] && cp "$work/soak.csv" "$CSV"
[ -s "$work/soak.json" ] || { echo "soak: the load tool wrote no figures:"; tail -5 "$work/load.out"
                              exit 1; }

echo "soak: $rate msg/s for $minutes min, 1000 users; per minute:"
echo "minute  delivered/s  worst p99 ms  worst p99.9 ms  server RSS MiB  server us/msg  tool us/msg"
# Columns: 1 second, 4 delivered, 7 p99, 8 p99.9, 10 server RSS KiB, 11 and 12 CPU % of a core.
awk -F, 'NR > 1 && $1 <= '"$((minutes * 60))"' {
    m = int(($1 - 1) / 60) + 1
    n[m]++; d[m] += $4; s[m] += $11; t[m] += $12; rss[m] = $10
    if ($7 > p99[m]) p99[m] = $7
    if ($8 > p999[m]) p999[m] = $8
  }
  END {
    for (i = 1; i in n; i++)
      printf "%6d  %11.0f  %12.1f  %14.1f  %14.1f  %13.1f  %11.1f\n", i, d[i] / n[i], p99[i],
        p999[i], rss[i] / 1024, (d[i] > 0 ? s[i] * 1e4 / d[i] : 0),
        (d[i] > 0 ? t[i] * 1e4 / d[i] : 0)
  }' "$work/soak.csv"
echo "server open files: $fds_start before the run, $fds_end after it; data directory" \
  "$data_mib MiB in $tables tables"
printf 'whole run: delivered %s, lost %s, duplicated %s, errors %s; p99 %s ms, p99.9 %s ms,' \
  "$(field "$work/soak.json" delivered)" "$(field "$work/soak.json" lost)" \
  "$(field "$work/soak.json" duplicated)" "$(field "$work/soak.json" errors)" \
  "$(within "$work/soak.json" latency_ms p99)" "$(within "$work/soak.json" latency_ms p999)"
printf ' max %s ms; steal %s%%\n' "$(within "$work/soak.json" latency_ms max)" \
  "$(steal_percent "$cpu0" "$cpu1")"

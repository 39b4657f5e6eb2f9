#!/usr/bin/env bash
# What users cost who chatted and went quiet with their devices still online: a fresh server
# of BUILD_DIR (user-idle-timeout-ms = 2000, so that quiet periods pass within the run), a
# closed loop of 1000 users x MESSAGES (window 10, 64-byte bodies), then every device stays
# online without sending for LINGER s (missive-load --linger). Prints the server's RSS with the
# devices online before the run, at its end and after the quiet:
#
#   benchmarks/quiet.sh [BUILD_DIR] [MESSAGES] [LINGER]   (defaults: build, 300, 30)
#
# SERVER=path measures another server binary with the same load tool (an A/B: alternate the
# two). Figures only; nothing passes or fails. Bounded in time, all traffic on 127.0.0.1.
# BENCHMARKS.md, "Session 19".
set -euo pipefail
build=${1:-build}
messages=${2:-300}
linger=${3:-30}
server=${SERVER:-$build/apps/missive-server}
load=$build/apps/missive-load
source "$(dirname "$0")/run_helpers.sh"
need_built quiet "$server" "$load"
source "$(dirname "$0")/../tests/support/start_server.sh"
work_dir
printf 'password-hash = min\nuser-idle-timeout-ms = 2000\n' > "$work/quiet.conf"

sync # the last run's freed blocks are trimmed now, not during this one (see bars.sh)
start_server_in "$server" "$work/quiet.conf" "$work"
"$load" --server "$address" --users 1000 --messages "$messages" --window 10 --body 64 \
  --server-pid "$pid" --linger "$linger" --json "$work/quiet.json" > /dev/null 2>&1 || true
stop_server
mib() { awk -v k="$(field "$work/quiet.json" "$1")" 'BEGIN { printf "%.1f", k / 1024 }'; }
printf '1000 x %s, then %s s quiet: server RSS %s MiB online before, %s at the end, %s after' \
  "$messages" "$linger" "$(mib server_rss_kib_online)" "$(mib server_rss_kib_end)" \
  "$(mib server_rss_kib_quiet)"
printf ' the quiet; %s delivered msg/s, lost %s, duplicated %s\n' \
  "$(field "$work/quiet.json" throughput_msgs_per_s)" "$(field "$work/quiet.json" lost)" \
  "$(field "$work/quiet.json" duplicated)"

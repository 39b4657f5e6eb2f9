#!/usr/bin/env bash
# Third-party pushes in a burst: a fresh server of BUILD_DIR whose push gateway is
# missive-load's stand-in (answering each push after ANSWER_MS), USERS users of whom the second
# half registered a push token and went offline, then one message from each of the first half
# to one of them. Prints the tool's push line (every offline device pushed with the right
# count, pushes per second, first message to first push, connections and requests the server
# held open to the gateway) and the server's CPU time:
#
#   benchmarks/push.sh [BUILD_DIR] [USERS] [ANSWER_MS]   (build, 4000, 50)
#
# CONFIG='key = value' adds settings (one per line), e.g. 'push-gateway-connections = 256'.
# SERVER=path measures another server binary (an A/B: alternate the two). Accounts use `password-hash = min`, as the other load
# runs do (thousands of sign-ups). Figures only; nothing passes or fails. Bounded in time, all
# traffic on 127.0.0.1. BENCHMARKS.md, "Session 23".
set -euo pipefail
build=${1:-build}
users=${2:-4000}
answer_ms=${3:-50}
server=${SERVER:-$build/apps/missive-server}
load=$build/apps/missive-load
source "$(dirname "$0")/run_helpers.sh"
need_built push "$server" "$load"
source "$(dirname "$0")/../tests/support/start_server.sh"
work_dir
port=$(free_port)
cat > "$work/push.conf" <<CONF
password-hash = min
rate-limit-per-second = 0
push-provider = webhook
push-gateway-url = http://127.0.0.1:$port/_matrix/push/v1/notify
push-disconnect-delay-ms = 0
${CONFIG:-}
CONF
start_server_in "$server" "$work/push.conf" "$work"
status=0
timeout 600 "$load" --server "$address" --scenario push --users "$users" --messages 1 \
  --push-listen "127.0.0.1:$port" --push-answer-ms "$answer_ms" --json "$work/push.json" \
  > "$work/push.out" 2>&1 || status=$?
grep '^push:' "$work/push.out" || { echo "push: no push figures (exit status $status):"
                                     tail -5 "$work/push.out"; exit 1; }
echo "server: gateway answering in $answer_ms ms;" \
  "$(awk -v t="$(cpu_ticks "$pid")" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz }') s of" \
  "server CPU for the whole run (sign-ups, logins, sends, pushes, catch-up)"
grep -q '"lost": 0,' "$work/push.json" && grep -q '"errors": 0,' "$work/push.json" \
  || { echo "push: the run had errors:"; grep -v '^\[' "$work/push.out" | tail -8; }

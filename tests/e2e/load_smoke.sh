#!/usr/bin/env bash
# A tiny run of missive-load against the real server (closed loop, open loop, groups, acking
# devices): every message must reach every device exactly once. Then refused logins and a
# server killed mid-run: a failed run, promptly. Figures are not checked here: they are
# benchmarks.
set -euo pipefail
server=$1 load=$2
work=$(mktemp -d)
pid=
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'password-hash = min\n' > "$work/test.conf"
source "$(dirname "$0")/../support/start_server.sh"
start_server() { # sets pid and address
  start_server_in "$server" "$work/test.conf" "$work"
}

# --help describes every flag the README's table lists (a line of its own, not just the usage
# line), and exits 0; a bad flag exits 2.
"$load" --help > "$work/help.txt"
readme=$(dirname "$0")/../../README.md
flags=$(sed -n '/^## Load testing/,/^##/p' "$readme" | grep '^| `--' | cut -d'|' -f2 \
  | grep -o -- '--[a-z-]*' | sort -u)
[ -n "$flags" ] || { echo "load_smoke: no flag table found in $readme"; exit 1; }
for flag in $flags; do
  grep -qE -- "^  (--[a-z-]+ [^ ,]+, )?$flag " "$work/help.txt" \
    || { echo "load_smoke: --help does not describe $flag"; cat "$work/help.txt"; exit 1; }
done
status=0
"$load" --no-such-flag 1 2> "$work/usage.txt" || status=$?
[ "$status" = 2 ] && grep -q 'unknown option --no-such-flag' "$work/usage.txt" \
  || { echo "load_smoke: a bad flag exited $status"; cat "$work/usage.txt"; exit 1; }

start_server

check() { # json file
  grep -q '"lost": 0,' "$1" && grep -q '"duplicated": 0,' "$1" && grep -q '"errors": 0,' "$1" \
    || { echo "load_smoke: anomalies in $1:"; cat "$1"; exit 1; }
}
"$load" --server "$address" --users 20 --devices 2 --messages 20 --window 4 \
  --json "$work/closed.json" --csv "$work/closed.csv"
check "$work/closed.json"
# Each user sends only to its 2 contacts (the next two users): still exactly once.
"$load" --server "$address" --users 20 --messages 10 --window 2 --peers 2 --prefix contacts \
  --json "$work/peers.json"
check "$work/peers.json"
grep -q '"delivered": 200,' "$work/peers.json" \
  || { echo "load_smoke: --peers 2: expected 20 x 10 deliveries"; cat "$work/peers.json"; exit 1; }
"$load" --server "$address" --scenario open --users 20 --rate 200 --duration 2 \
  --json "$work/open.json" --csv "$work/open.csv" --server-pid "$pid"
check "$work/open.json"
# With --server-pid, each second of the time series has the server's memory and CPU, and the
# tool's CPU (columns 10 to 12).
awk -F, 'NR == 1 { ok = $10 == "server_rss_kib" && $12 == "tool_cpu_percent"; next }
         $10 <= 0 || $11 == "" || $12 == "" { ok = 0 } END { exit !(ok && NR > 2) }' \
  "$work/open.csv" || { echo "load_smoke: open loop: the CSV lacks the server's figures"
                        cat "$work/open.csv"; exit 1; }
# The open loop tells the tool's lateness and the answers' latency apart: both recorded, and
# every answer comes some time after its planned send.
ack_max=$(grep -o '"ack_latency_ms": {[^}]*}' "$work/open.json" | grep -o '"max": [0-9.]*' \
  | cut -d' ' -f2)
grep -q '"send_lag_ms": {"p50": ' "$work/open.json" \
  && awk -v m="${ack_max:-0}" 'BEGIN { exit !(m > 0) }' \
  || { echo "load_smoke: open loop: no send_lag_ms / ack_latency_ms"; cat "$work/open.json"
       exit 1; }
sent=$(grep -o '"sent": [0-9]*' "$work/open.json" | grep -o '[0-9]*$')
[ "$sent" -ge 300 ] \
  || { echo "load_smoke: open loop: $sent sent, expected about 400 (200/s for 2 s)"; exit 1; }
# The ramp judges each step on its own messages. A generous target carries every step, so the
# capacity is the ramp's top and only a lower bound; an impossible one ends the ramp after its
# first step is judged: capacity 0, and the steps after the one then running never begin.
"$load" --server "$address" --scenario ramp --users 20 --rate 100 --rate-step 100 \
  --rate-max 300 --duration 1 --target-ms 2000,2000 --prefix ramp --json "$work/ramp.json" \
  > "$work/ramp.out"
check "$work/ramp.json"
grep -q '"capacity_msgs_per_s": 300, "capacity_is_lower_bound": true' "$work/ramp.json" \
  && [ "$(grep -o '"carried": true' "$work/ramp.json" | wc -l)" = 3 ] \
  && grep -q '^capacity: at least 300 msg/s' "$work/ramp.out" \
  || { echo "load_smoke: ramp with a generous target"; cat "$work/ramp.out"; exit 1; }
"$load" --server "$address" --scenario ramp --users 20 --rate 100 --rate-step 100 \
  --rate-max 500 --duration 2 --target-ms 0.001,0.001 --prefix ramp --json "$work/ramp0.json" \
  > "$work/ramp0.out"
check "$work/ramp0.json"
steps=$(grep -o '"rate": [0-9]*, "whole"' "$work/ramp0.json" | wc -l)
grep -q '"capacity_msgs_per_s": 0, "capacity_is_lower_bound": false' "$work/ramp0.json" \
  && grep -q '"steps": \[{"rate": 100, "whole": true, .*"carried": false}' "$work/ramp0.json" \
  && [ "$steps" -ge 1 ] && [ "$steps" -le 3 ] \
  || { echo "load_smoke: ramp with an impossible target ($steps steps)"; cat "$work/ramp0.out"
       exit 1; }
status=0
"$load" --server "$address" --scenario ramp --rate 100 --rate-max 50 2> "$work/usage.txt" \
  || status=$?
[ "$status" = 2 ] && grep -q 'rate-max at least --rate' "$work/usage.txt" \
  || { echo "load_smoke: a ramp going down exited $status"; cat "$work/usage.txt"; exit 1; }
"$load" --server "$address" --scenario groups --users 20 --devices 2 --group-size 5 \
  --messages 10 --window 2 --prefix grp --json "$work/groups.json"
check "$work/groups.json"
grep -q '"delivered": 1600,' "$work/groups.json" \
  || { echo "load_smoke: groups: expected 20 x 10 x 4 members x 2 devices"; cat "$work/groups.json"; exit 1; }
"$load" --server "$address" --users 10 --messages 10 --window 2 --ack yes --prefix acking \
  --json "$work/ack.json"
check "$work/ack.json"
grep -q '"cursor_acks": [1-9]' "$work/ack.json" \
  || { echo "load_smoke: --ack yes: no cursor acknowledged"; cat "$work/ack.json"; exit 1; }
# Every device drops its connection and logs in again at once: by resume token (the tool then
# sends no password, so a token the server ignored would fail the run), and by password.
for resume in yes no; do
  "$load" --server "$address" --scenario reconnect --resume $resume --users 10 --devices 2 \
    --prefix "reconnect-$resume" --json "$work/reconnect-$resume.json" > "$work/reconnect.out"
  check "$work/reconnect-$resume.json"
  grep -q '^reconnect: 20 of 20 devices logged in again' "$work/reconnect.out" \
    && grep -q '"delivered": 20,' "$work/reconnect-$resume.json" \
    || { echo "load_smoke: reconnect --resume $resume"; cat "$work/reconnect.out"; exit 1; }
done
# Offline backlogs, twice on the same users: the second run's receivers find the first run's
# messages in their mailboxes too, which count apart and never as this run's deliveries (where
# they would hide a lost one, and end the catch-up early).
for run in 1 2; do
  "$load" --server "$address" --scenario backlog --users 4 --messages 5 --window 2 \
    --prefix backlog --json "$work/backlog$run.json" > "$work/backlog.out"
  check "$work/backlog$run.json"
  grep -q '"delivered": 10,' "$work/backlog$run.json" \
    || { echo "load_smoke: backlog run $run"; cat "$work/backlog$run.json"; exit 1; }
done
grep -q '"older_messages": 10,' "$work/backlog2.json" \
  || { echo "load_smoke: a reused prefix"; cat "$work/backlog2.json"; exit 1; }
grep -q '^second,' "$work/closed.csv"
# The JSON names the host its figures come from.
cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' | tr -d '"\\')
grep -qF "\"host_cpu\": \"${cpu:-unknown}\"," "$work/closed.json" \
  && grep -q "\"host_cores\": $(getconf _NPROCESSORS_ONLN)," "$work/closed.json" \
  || { echo "load_smoke: the JSON does not name this host ($cpu)"; cat "$work/closed.json"
       exit 1; }
# Logins that fail (the accounts exist with another password): a failed run, promptly — not a
# tool that waits for its simulated users forever.
status=0
timeout 60 "$load" --server "$address" --scenario idle --users 5 --prefix acking \
  --password not-the-password > "$work/refused.out" 2>&1 || status=$?
[ "$status" -eq 1 ] && grep -q "of 5 devices logged in" "$work/refused.out" \
  || { echo "load_smoke: refused logins: exit status $status"; cat "$work/refused.out"; exit 1; }
# The server killed in the middle of a long closed loop: every send after that fails on the
# spot (its device is offline); the tool counts them and ends with status 1 — it must not
# recurse through them (a stack overflow) or hang.
kill -9 $pid
wait $pid 2>/dev/null || true
start_server
(sleep 1; kill -9 $pid) &
status=0
timeout 60 "$load" --server "$address" --users 4 --messages 1000000 --window 10 --drain 1 \
  --prefix killed > "$work/killed.out" 2>&1 || status=$?
[ "$status" -eq 1 ] && grep -q "not_logged_in" "$work/killed.out" \
  || { echo "load_smoke: server killed mid-run: exit status $status"
       tail -5 "$work/killed.out"
       exit 1; }
# Pushes to offline devices: a server whose push gateway is the tool's stand-in, on a port
# that nothing listens on (another is tried if one is taken by the time the tool listens).
# The stand-in answers every device's first push with 503 (an overloaded relay): every
# receiver's device is still pushed, after the server's retry, with the count of what was sent
# to it, never with more than push-gateway-connections requests at once, and then catches up.
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
status=0
"$load" --scenario push --push-answer-ms -1 2> "$work/usage.txt" || status=$?
[ "$status" = 2 ] && grep -q 'push-answer-ms is 0 to 60000' "$work/usage.txt" \
  || { echo "load_smoke: a negative --push-answer-ms exited $status"; exit 1; }
for _ in 1 2 3; do
  port=$(free_port)
  printf 'password-hash = min\nrate-limit-per-second = 0\npush-provider = webhook\n' \
    > "$work/push.conf"
  printf 'push-gateway-url = http://127.0.0.1:%s/_matrix/push/v1/notify\n' "$port" \
    >> "$work/push.conf"
  printf 'push-disconnect-delay-ms = 0\npush-min-interval-ms = 300\n' >> "$work/push.conf"
  printf 'push-gateway-connections = 2\npush-retry-min-ms = 100\n' >> "$work/push.conf"
  start_server_in "$server" "$work/push.conf" "$work"
  status=0
  "$load" --server "$address" --scenario push --users 20 --messages 3 --window 1 \
    --push-listen "127.0.0.1:$port" --push-answer-ms 20 --push-fail-percent 100 --prefix push \
    --json "$work/push.json" > "$work/push.out" 2>&1 || status=$?
  grep -q 'cannot listen' "$work/push.out" && { stop_server; continue; }
  [ "$status" = 0 ] || { echo "load_smoke: push: exit status $status"; cat "$work/push.out"
                         exit 1; }
  break
done
check "$work/push.json"
peak=$(grep -o '"peak_requests": [0-9]*' "$work/push.json" | grep -o '[0-9]*$')
grep -q '"push": {"devices": 10, "pushed": 10, "missing": 0, "wrong_count": 0,' \
  "$work/push.json" && grep -q '"delivered": 30,' "$work/push.json" \
  && grep -q '"refused": 10}' "$work/push.json" \
  && [ "${peak:-0}" -ge 1 ] && [ "$peak" -le 2 ] \
  || { echo "load_smoke: push (peak requests $peak)"; cat "$work/push.out"; exit 1; }
echo "load_smoke: 1 passed, 0 failed"

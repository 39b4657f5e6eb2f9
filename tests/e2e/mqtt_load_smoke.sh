#!/usr/bin/env bash
# A tiny run of missive-mqtt-load (the comparison tool, benchmarks/mqtt_load.cpp) against a real
# mosquitto, in both modes compare-mosquitto.sh uses (closed, idle and open loops): every message
# must reach its recipient exactly once, and the durable broker must have written its database.
# Then a broker that is not there and one killed mid-run: a failed run, promptly. Figures are
# not checked here.
set -euo pipefail
tool=$1
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
source "$(dirname "$0")/../support/start_mosquitto.sh"
stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}
check() { # json file, delivered count ("" for any)
  grep -q '"lost": 0,' "$1" && grep -q '"duplicated": 0,' "$1" && grep -q '"errors": 0,' "$1" \
    && { [ -z "$2" ] || grep -q "\"delivered\": $2," "$1"; } \
    || { echo "mqtt_load_smoke: anomalies in $1:"; cat "$1"; exit 1; }
}

start_mosquitto_in "$work" memory
"$tool" --server "$address" --users 20 --messages 20 --window 4 --json "$work/closed.json"
check "$work/closed.json" 400
cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' | tr -d '"\\')
grep -qF "\"host_cpu\": \"${cpu:-unknown}\"," "$work/closed.json" \
  || { echo "mqtt_load_smoke: the JSON does not name this host"; cat "$work/closed.json"; exit 1; }
# Groups of 10 (the last of 5): every member gets each message once, the sender included.
"$tool" --server "$address" --scenario groups --users 25 --group-size 10 --messages 4 \
  --window 2 --prefix grp --json "$work/groups.json"
check "$work/groups.json" 900
# Idle connections, the broker's memory sampled (same machine), then one message to each.
"$tool" --server "$address" --scenario idle --users 400 --server-pid "$pid" \
  --json "$work/idle.json"
check "$work/idle.json" 400
grep -q '"server_rss_kib_online": [1-9]' "$work/idle.json" \
  || { echo "mqtt_load_smoke: idle: no broker memory"; cat "$work/idle.json"; exit 1; }
# The crash comparison's steps without the crash: recipients subscribe and go offline, others
# send to them (--to) and record what was acked, the recipients come back and collect it all.
"$tool" --server "$address" --scenario collect --prefix rcv --users 20 --drain 2
"$tool" --server "$address" --prefix snd --to rcv --users 20 --messages 10 --window 3 \
  --record "$work/sent.txt" --json "$work/to.json"
grep -q '"acked": 200,' "$work/to.json" \
  || { echo "mqtt_load_smoke: --to: expected 200 acked"; cat "$work/to.json"; exit 1; }
"$tool" --server "$address" --scenario collect --prefix rcv --users 20 --drain 10 \
  --record "$work/kept.txt"
grep '^a' "$work/sent.txt" | cut -c3- | sort -u > "$work/acked"
grep '^d' "$work/kept.txt" | cut -c3- | sort -u > "$work/kept"
[ "$(wc -l < "$work/acked")" -eq 200 ] && cmp -s "$work/acked" "$work/kept" \
  || { echo "mqtt_load_smoke: collect: what was acked is not what came back"
       wc -l "$work/acked" "$work/kept"; exit 1; }
stop

rm -rf "$work/data"
start_mosquitto_in "$work" durable
"$tool" --server "$address" --scenario open --users 20 --rate 200 --duration 2 \
  --json "$work/open.json"
check "$work/open.json" ""
sent=$(grep -o '"sent": [0-9]*' "$work/open.json" | grep -o '[0-9]*$')
[ "$sent" -ge 300 ] \
  || { echo "mqtt_load_smoke: open loop: $sent sent, expected about 400 (200/s for 2 s)"; exit 1; }
[ -s "$work/data/mosquitto.db" ] \
  || { echo "mqtt_load_smoke: the durable broker wrote no database"; ls -la "$work/data"; exit 1; }

# The broker killed in the middle of a long closed loop: the tool notices the closed
# connections, stops waiting once nothing moves for --drain seconds, and fails.
(sleep 1; kill -9 $pid) &
status=0
timeout 60 "$tool" --server "$address" --users 4 --messages 1000000 --window 10 --drain 1 \
  > "$work/killed.out" 2>&1 || status=$?
wait $pid 2>/dev/null || true
pid=
# (On a slow machine the kill may come while the users still connect: also a failed run.)
[ "$status" -eq 1 ] \
  && grep -Eq "broker closed a connection|Connection reset|Connection refused|users connected" \
       "$work/killed.out" \
  || { echo "mqtt_load_smoke: broker killed mid-run: exit status $status"
       tail -5 "$work/killed.out"; exit 1; }

# Nothing listening (the killed broker's port): a failed run at once.
status=0
timeout 60 "$tool" --server "$address" --users 4 > "$work/refused.out" 2>&1 || status=$?
[ "$status" -eq 1 ] && grep -q "connect: Connection refused" "$work/refused.out" \
  || { echo "mqtt_load_smoke: no broker: exit status $status"; cat "$work/refused.out"; exit 1; }
echo "mqtt_load_smoke: 1 passed, 0 failed"

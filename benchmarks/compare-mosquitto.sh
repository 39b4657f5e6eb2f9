#!/usr/bin/env bash
# Missive beside mosquitto, on this machine, in one sitting: the comparison issue 4's bars were
# drawn from ("mosquitto delivers about 40,000 1:1 messages/s … with its most durable setting it
# falls to 5,000–8,000/s and its p99 at 1,000 msg/s is 12–20 ms"), measured with the same shape
# of traffic instead of quoted from another host. Three servers, each fresh for every run, on a
# free loopback port:
#
#   missive            missive-server, default settings (durability sync: every message is in
#                      LevelDB's fdatasync'd log before it is acknowledged or delivered)
#   mosquitto memory   mosquitto, persistence off (a restart loses every queued message)
#   mosquitto durable  mosquitto's most durable setting: the whole database saved, with fsync,
#                      after every change (autosave_on_changes, autosave_interval 1). It still
#                      forwards and acknowledges a message before that save (strace shows the
#                      PUBACK written before the fsync), so a crash can lose acknowledged ones.
#
# and three loads, all 1000 users, random 1:1, 64-byte bodies (missive-load against Missive,
# missive-mqtt-load against mosquitto: QoS 1, persistent sessions, one connection per user):
#
#   closed      1000 x 50 messages, window 10 (bar 1's shape)
#   open 1000   1,000 msg/s for 10 s (the issue's latency reference for mosquitto)
#   open RATE   RATE msg/s for 10 s
#   idle N      (only when asked for: SHAPES=idle-16000) N users connected and idle, the
#               server's memory sampled with half and with all of them (bytes per additional
#               connection, bar 3's measure), then one message to each
#   groups G    (only when asked for: SHAPES=groups-10) 1000 users in groups of G, each keeping
#               4 messages to its group in flight until it sent 20; msg/s counts member copies
#               (mosquitto's include the sender's own, Missive's do not), plus group messages/s
#   backlog     (only when asked for: SHAPES=backlog) bar 4's catch-up: 10,000 messages sent to
#               an offline user, who then comes online; the time from its connection to
#               holding them all (Missive: missive-load's backlog scenario, rate limit off;
#               mosquitto: a persistent session that reconnects)
#   crash       (only when asked for: SHAPES=crash) acknowledged messages lost to a SIGKILL.
#               mosquitto: 200 users subscribe and go offline (persistent sessions), 200 others
#               send to them (closed loop, window 10), the broker is killed 3 s in and
#               restarted, the recipients come back and collect what it kept. Missive: the
#               chaos test's tool (tests/chaos/chaos.cpp: devices online and offline, SIGKILLs
#               under load, every acknowledged message checked on every device)
#
# Each line: delivered msg/s, latency p50 / p99 / p99.9 (ms, from the planned send), lost and
# duplicated, CPU per delivered message of the server and of the load tool (connections and
# logins included), and the share of the machine's CPU time stolen by the hypervisor during the
# run (the host's other load: BENCHMARKS.md, "Session 14").
#
#   benchmarks/compare-mosquitto.sh [BUILD_DIR] [RUNS] [RATE]   (defaults: build, 1, 5000)
#
# Needs mosquitto (`make compare` installs it). KINDS and SHAPES in the environment choose a
# subset, e.g. SHAPES=open-10000. Figures only: nothing here passes or fails.
# Every loop is bounded in runs and time, and all traffic stays on 127.0.0.1.
set -euo pipefail
build=${1:-build}
runs=${2:-1}
rate=${3:-5000}
server=$build/apps/missive-server
load=$build/apps/missive-load
mqtt_load=$build/benchmarks/missive-mqtt-load
source "$(dirname "$0")/run_helpers.sh"
need_built compare "$server" "$load" "$mqtt_load"
work_dir
printf 'password-hash = min\n' > "$work/missive.conf"
printf 'password-hash = min\nrate-limit-per-second = 0\n' > "$work/norate.conf"

source "$(dirname "$0")/../tests/support/start_server.sh"
source "$(dirname "$0")/../tests/support/start_mosquitto.sh"
[ -x "$(mosquitto_bin)" ] \
  || { echo "compare: mosquitto is not installed (make compare installs it)" >&2; exit 2; }

start() { # kind: a fresh server of that kind; sets pid and address
  rm -rf "$work/data"
  sync
  case $1 in
    missive) start_server_in "$server" "$work/missive.conf" "$work" ;;
    missive-purging) # its allocator returns freed pages at once, so RSS tracks live memory
      MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0 \
        start_server_in "$server" "$work/missive.conf" "$work" ;;
    mosquitto-memory) start_mosquitto_in "$work" memory ;;
    mosquitto-durable) start_mosquitto_in "$work" durable ;;
  esac
}

run() { # kind, load: one run against a fresh server of that kind, one line of figures
  local kind=$1 shape=$2 tool args
  if [ "$kind" = missive ] && [ "${shape%%-*}" = idle ]; then
    start missive-purging # as BENCHMARKS.md, "Connections", measures bar 3
  else
    start "$kind"
  fi
  case $shape in
    closed) args=(--users 1000 --messages 50 --window 10 --body 64) ;;
    open-*) args=(--scenario open --rate "${shape#open-}" --duration 10 --users 1000 --body 64) ;;
    idle-*) args=(--scenario idle --users "${shape#idle-}" --server-pid "$pid") ;;
    groups-*) args=(--scenario groups --users 1000 --group-size "${shape#groups-}" --messages 20
                    --window 4 --body 64) ;;
  esac
  if [ "$kind" = missive ]; then tool=$load; else tool=$mqtt_load; fi
  before=$(cpu_ticks "$pid")
  local times_before stolen
  times_before=$(cpu_times)
  rm -f "$work/run.json"
  run_sampled "$tool" --server "$address" "${args[@]}" --json "$work/run.json" \
    > "$work/tool.out" 2>&1
  after=$(cpu_ticks "$pid")
  stolen=$(steal_percent "$times_before" "$(cpu_times)")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  if [ ! -s "$work/run.json" ]; then # the tool gave up before its summary
    printf '%-17s %-10s no figures: %s\n' "$kind" "$shape" "$(grep -m1 'only\|:' "$work/tool.out")"
    return
  fi
  local delivered
  delivered=$(field "$work/run.json" delivered)
  printf '%-17s %-10s %8.0f msg/s  p50 %8s  p99 %8s  p99.9 %8s ms  lost %s dup %s  ' \
    "$kind" "$shape" "$(field "$work/run.json" throughput_msgs_per_s)" \
    "$(within "$work/run.json" latency_ms p50)" "$(within "$work/run.json" latency_ms p99)" \
    "$(within "$work/run.json" latency_ms p999)" "$(field "$work/run.json" lost)" \
    "$(field "$work/run.json" duplicated)"
  if [ "${shape%%-*}" = idle ]; then
    printf 'server memory per idle connection %s bytes\n' \
      "$(field "$work/run.json" server_bytes_per_device)"
    return
  fi
  if [ "${shape%%-*}" = groups ]; then # msg/s above: member copies delivered
    printf '%.0f group msg/s; ' "$(field "$work/run.json" acked_msgs_per_s)"
  fi
  awk -v s=$((after - before)) -v t="$tool_ticks" -v n="${delivered:-1}" -v hz="$hz" \
    -v stolen="$stolen" 'BEGIN { printf "CPU/msg: server %.0f us, tool %.0f us; stolen %s%%\n",
                                 s * 1e6 / hz / n, t * 1e6 / hz / n, stolen }'
}

backlog_run() { # kind: one catch-up of a 10,000-message backlog, one line
  local kind=$1
  rm -rf "$work/data"
  sync
  if [ "$kind" = missive ]; then
    start_server_in "$server" "$work/norate.conf" "$work"
    "$load" --server "$address" --scenario backlog --users 2 --messages 10000 --window 100 \
      --prefix backlog --json "$work/run.json" > /dev/null 2>&1 || true
  else
    start_mosquitto_in "$work" "${kind#mosquitto-}"
    "$mqtt_load" --server "$address" --scenario collect --prefix rcv --users 1 --drain 2 \
      > /dev/null 2>&1 || true # the recipient's session, then offline
    "$mqtt_load" --server "$address" --prefix snd --to rcv --users 1 --messages 10000 \
      --window 100 > /dev/null 2>&1 || true
    "$mqtt_load" --server "$address" --scenario collect --prefix rcv --users 1 --drain 30 \
      --json "$work/run.json" > /dev/null 2>&1 || true
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  if [ "$kind" = missive ]; then
    printf '%-17s %-10s caught up %s entries in %s ms (login to holding them all)\n' "$kind" \
      backlog "$(field "$work/run.json" backlog_entries)" \
      "$(within "$work/run.json" catchup_ms max)"
  else
    printf '%-17s %-10s caught up %s messages in %.1f ms (connection to holding them all)\n' \
      "$kind" backlog "$(field "$work/run.json" delivered)" \
      "$(awk -v s="$(field "$work/run.json" elapsed_s)" 'BEGIN { print s * 1000 }')"
  fi
}

crash_run() { # kind: one crash run of that kind, one line
  local kind=$1 mode=${1#mosquitto-}
  if [ "$kind" = missive ]; then
    local chaos=$build/tests/missive-chaos proxy=$build/tests/missive-fault-proxy
    [ -x "$chaos" ] && [ -x "$proxy" ] \
      || { printf '%-17s %-10s no figures: %s is missing\n' "$kind" crash "$chaos"; return; }
    "$chaos" --server-bin "$server" --proxy-bin "$proxy" --users 20 --devices 2 \
      --messages 300 --kills 3 --seed 1 --max-seconds 120 > "$work/chaos.out" 2>&1 || true
    printf '%-17s %-10s %s (3 SIGKILLs, 20 users x 2 devices)\n' "$kind" crash \
      "$(grep -m1 '^acked' "$work/chaos.out" || tail -1 "$work/chaos.out")"
    return
  fi
  rm -rf "$work/data"
  start_mosquitto_in "$work" "$mode"
  "$mqtt_load" --server "$address" --scenario collect --prefix to --users 200 --drain 2 \
    > /dev/null 2>&1 || true # the recipients' sessions, then offline
  "$mqtt_load" --server "$address" --prefix from --to to --users 200 --messages 100000 \
    --window 10 --drain 2 --record "$work/sent.txt" > /dev/null 2>&1 &
  local tool_pid=$!
  sleep 3
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  wait "$tool_pid" || true
  restart_mosquitto_in "$work"
  "$mqtt_load" --server "$address" --scenario collect --prefix to --users 200 --drain 30 \
    --record "$work/kept.txt" > /dev/null 2>&1 || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  { grep '^a' "$work/sent.txt" || true; } | cut -c3- | sort -u > "$work/acked"
  { grep '^d' "$work/kept.txt" || true; } | cut -c3- | sort -u > "$work/kept" # none: all lost
  printf '%-17s %-10s acked %s, delivered after the restart %s, acked and lost %s\n' "$kind" \
    crash "$(wc -l < "$work/acked")" "$(wc -l < "$work/kept")" \
    "$(comm -23 "$work/acked" "$work/kept" | wc -l)"
}

printf 'machine: %s, %s cores; mosquitto %s\n' \
  "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
  "$(getconf _NPROCESSORS_ONLN)" "$("$(mosquitto_bin)" -h 2>/dev/null | head -1 | awk '{print $3}')"
for shape in ${SHAPES:-closed open-1000 "open-$rate"}; do
  for i in $(seq "$runs"); do # alternating, so a slow spell of the machine hits all three
    for kind in ${KINDS:-missive mosquitto-memory mosquitto-durable}; do
      case $shape in
        crash) crash_run "$kind" ;;
        backlog) backlog_run "$kind" ;;
        *) run "$kind" "$shape" ;;
      esac
    done
  done
done

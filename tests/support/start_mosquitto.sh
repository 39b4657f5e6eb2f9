# Sourced by tests/e2e/mqtt_load_smoke.sh and benchmarks/compare-mosquitto.sh.
# start_mosquitto_in WORK_DIR memory|durable: starts mosquitto on a free loopback port with its
# files in WORK_DIR (durable: its database in WORK_DIR/data) and waits until it listens; sets
# `pid` and `address` (prints mosquitto's output and exits if it does not start).
#
# Both modes queue without limit (max_queued_messages 0, max_inflight_messages 0): with its
# defaults mosquitto drops QoS 1 messages past 1000 queued for a client, which a load test would
# count as lost. `durable` is mosquitto's most durable setting: the whole database is saved, with
# fsync, after every change.
# The mosquitto binary (Debian puts it in /usr/sbin, which is not on every user's PATH).
mosquitto_bin() {
  command -v mosquitto || echo /usr/sbin/mosquitto
}

# launch_mosquitto_in WORK_DIR: starts mosquitto with WORK_DIR/mosquitto.conf and waits until it
# runs (at most 5 s); sets `pid`. Fails (status 1, mosquitto killed) if it does not start.
launch_mosquitto_in() {
  # The last broker's output goes first: the new one's shell truncates the file only once it
  # runs, and until then the old "running" line would pass the check below.
  rm -f "$1/mosquitto.out"
  "$(mosquitto_bin)" -c "$1/mosquitto.conf" > "$1/mosquitto.out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    grep -qs " running" "$1/mosquitto.out" && kill -0 "$pid" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 1
}

start_mosquitto_in() {
  local dir=$1 mode=$2 port
  for _ in $(seq 20); do # mosquitto cannot listen on port 0 and tell which port it got
    port=$((20000 + RANDOM % 40000))
    {
      echo "listener $port 127.0.0.1"
      echo "allow_anonymous true"
      echo "max_queued_messages 0"
      echo "max_inflight_messages 0"
      echo "set_tcp_nodelay true" # as the load tools do; otherwise Nagle holds small writes
      echo "user $(id -un)" # as root, mosquitto would otherwise switch to user mosquitto
      if [ "$mode" = durable ]; then
        mkdir -p "$dir/data"
        echo "persistence true"
        echo "persistence_location $dir/data/"
        echo "autosave_on_changes true"
        echo "autosave_interval 1"
      else
        echo "persistence false"
      fi
    } > "$dir/mosquitto.conf"
    if launch_mosquitto_in "$dir"; then
      address=127.0.0.1:$port
      return 0
    fi
    grep -q "Address already in use" "$dir/mosquitto.out" || break
  done
  cat "$dir/mosquitto.out"
  exit 1
}

# restart_mosquitto_in WORK_DIR: starts mosquitto again with the configuration (port, files) the
# last start_mosquitto_in wrote there, e.g. after a SIGKILL; sets `pid`.
restart_mosquitto_in() {
  launch_mosquitto_in "$1" || { cat "$1/mosquitto.out"; exit 1; }
}

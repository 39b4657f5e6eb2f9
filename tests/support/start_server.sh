# Sourced by tests/e2e/load_smoke.sh and the benchmark scripts.
# start_server_in SERVER_BIN CONFIG WORK_DIR: starts the server on a free loopback port with its
# data in WORK_DIR/data and waits until it listens; sets `pid` and `address` (prints the
# server's output and exits if it does not start).
start_server_in() {
  # The last server's output goes first: the new one's shell truncates the file only once it
  # runs, and until then the old "listening on" line (an old port) would pass the check below.
  rm -f "$3/server.out"
  "$1" --config "$2" --listen 127.0.0.1:0 --data "$3/data" > "$3/server.out" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    grep -qs "listening on" "$3/server.out" && break
    sleep 0.05
  done
  address=$(grep -o 'listening on [0-9.:]*' "$3/server.out" | cut -d' ' -f3)
  [ -n "$address" ] || { cat "$3/server.out"; exit 1; }
}

# stop_server: stops the server start_server_in started and waits for it to exit.
stop_server() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}

# free_port: prints a loopback TCP port that nothing listens on now, from 20000-30000 (below
# the ephemeral range, so that no connection of ours takes it meanwhile); for a listener that
# must be named in the server's config before it starts, e.g. missive-load's push gateway.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 10000))
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null || { echo "$port"; return 0; }
  done
  echo "free_port: no free port found" >&2
  return 1
}

#!/usr/bin/env bash
# Password logins all at once, on the default config (password-hash = interactive): a fresh
# server of BUILD_DIR, DEVICES accounts created with missive-cli, then DEVICES `missive-cli
# sync` processes started together, each the first login of its device (so a password check,
# about 130 ms of CPU each, `password-threads` at a time). A CLI whose call times out (5 s)
# hangs up and retries, as real clients do. Prints the time until every one has synced and the
# server's CPU time meanwhile:
#
#   benchmarks/login-storm.sh [BUILD_DIR] [DEVICES] [login|register]   (build, 80, login)
#
# `register` times the sign-ups instead: DEVICES `missive-cli register` at once, each tried
# again (up to 20 times) after a timeout, or a second after `unavailable`, as a client would;
# it also counts the accounts a retry found taken (an earlier try was hashed and stored after
# its client had given up).
# SERVER=path measures another server binary with the same CLI (an A/B: alternate the two);
# CONFIG='key = value' adds settings to the defaults (one per line).
# Figures only; nothing passes or fails. Bounded in time, all traffic on 127.0.0.1.
# BENCHMARKS.md, "Session 20" and "Session 21".
set -euo pipefail
build=${1:-build}
devices=${2:-80}
mode=${3:-login}
case $mode in
  login | register) ;;
  *) echo "login-storm: MODE is login or register" >&2; exit 2 ;;
esac
server=${SERVER:-$build/apps/missive-server}
cli=$build/apps/missive-cli
source "$(dirname "$0")/run_helpers.sh"
need_built login-storm "$server" "$cli"
source "$(dirname "$0")/../tests/support/start_server.sh"
work_dir
printf '%s\n' "${CONFIG:-}" > "$work/default.conf" # the embedded defaults, and CONFIG's lines
mkdir "$work/home"

start_server_in "$server" "$work/default.conf" "$work"
as_cli() { # user, command...: one missive-cli run as device `storm` of `user`
  local user=$1
  shift
  HOME=$work/home timeout 300 "$cli" --server "$address" --user "$user" --password storm-pw \
    --device storm "$@"
}
sign_up() { # user: register, again after a timeout; prints taken if an earlier try got there
  local i out
  for i in $(seq 20); do
    if out=$(as_cli "$1" register 2>&1); then return 0; fi
    case $out in
      *exists*) echo taken; return 0 ;;
      *timeout*) ;;
      *unavailable*) sleep 1 ;; # the server's queue of password checks is full: a pause
      *) echo "$out" >&2; return 1 ;;
    esac
  done
  return 1
}
before= start=
begin() { before=$(cpu_ticks "$pid"); start=$(date +%s.%N); }
pids=()
if [ "$mode" = register ]; then
  begin
  for i in $(seq "$devices"); do
    sign_up "storm$i" > "$work/reg$i.out" &
    pids+=($!)
  done
else
  # One at a time: registrations at once would time out in the CLI while the server still
  # hashes them, into the measured part.
  for i in $(seq "$devices"); do
    as_cli "storm$i" register > /dev/null
  done
  begin
  for i in $(seq "$devices"); do
    as_cli "storm$i" sync --timeout 290 > "$work/sync$i.out" 2>&1 &
    pids+=($!)
  done
fi
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
end=$(date +%s.%N)
after=$(cpu_ticks "$pid")
stop_server
taken=$(cat "$work"/reg*.out 2>/dev/null | grep -c taken || true)
awk -v n="$devices" -v s="$start" -v e="$end" -v c=$((after - before)) -v hz="$hz" \
  -v f="$failed" -v m="$mode" -v t="$taken" \
  'BEGIN { if (m == "register") printf "%d sign-ups: all registered in %.1f s;", n, e - s
           else printf "%d devices: all logged in and synced in %.1f s;", n, e - s
           printf " server CPU %.1f s; failed %d", c / hz, f
           if (m == "register") printf "; found taken by a try given up %d", t
           printf "\n" }'

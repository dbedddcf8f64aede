#!/usr/bin/env bash
# Call-rate benchmark: SIPp's built-in UAC places calls at rising rates against
# `siphon listen --auto-answer` (signalling only: INVITE, 200, ACK, 100 ms, BYE, 200).
# For each rate it prints the calls attempted, succeeded, failed, the rate SIPp reached
# and siphon's CPU time per call. Loopback only; every run is bounded in calls and time.
#
#   scripts/bench-calls.sh [RATE ...]     (default: 250 500 1000 1500 2000 2500)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sipp >/dev/null || { echo "sipp (Debian package sip-tester) is needed" >&2; exit 1; }
cargo build --release --quiet
bin=$PWD/target/release/siphon
work=$(mktemp -d)
trap 'pkill -f "$bin listen --listen 127.0.0.1" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(250 500 1000 1500 2000 2500)
ticks=$(getconf CLK_TCK)
printf '%8s %8s %10s %8s %12s %16s\n' rate calls succeeded failed reached_cps siphon_cpu_us/call
for rate in "${rates[@]}"; do
  port=$((30000 + RANDOM % 20000))
  calls=$((rate * 10))
  "$bin" listen --listen 127.0.0.1:$port --auto-answer --duration 120 \
    --rtp-ports 20000-29999 --codecs pcmu >listen.out 2>listen.err &
  pid=$!
  sleep 0.5
  timeout 100 sipp 127.0.0.1:$port -sn uac -i 127.0.0.1 -mi 127.0.0.1 \
    -p $((port + 1)) -cp $((port + 2)) -r "$rate" -m "$calls" -d 100 \
    -timeout 90s -nostdin >sipp.out 2>&1 || true
  # utime + stime of the siphon process, in clock ticks (fields 14 and 15).
  read -r ut st < <(awk '{print $14, $15}' /proc/$pid/stat)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  ok=$(awk -F'|' '/Successful call/ {gsub(/ /,"",$3); print $3}' sipp.out | tail -1)
  failed=$(awk -F'|' '/Failed call/ {gsub(/ /,"",$3); print $3}' sipp.out | tail -1)
  reached=$(awk -F'|' '/Call Rate/ {gsub(/ cps| /,"",$3); print $3}' sipp.out | tail -1)
  cpu_us=$(( (ut + st) * 1000000 / ticks / (ok > 0 ? ok : 1) ))
  printf '%8s %8s %10s %8s %12s %16s\n' "$rate" "$calls" "${ok:-0}" "${failed:-?}" "${reached:-?}" "$cpu_us"
done

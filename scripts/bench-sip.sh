#!/usr/bin/env bash
# SIP load with media anchored: starts bin/sipanchor on a scratch config
# (127.0.0.1:15060, engage = "always"), places CALLS calls at RATE per
# second lasting HOLD ms with SIPp (scripts/sipp-calls.sh), and reports
# the outcome and sipanchor's CPU per call. Needs sip-tester.
#   scripts/bench-sip.sh [CALLS=12000] [RATE=1000] [HOLD=2000]
set -euo pipefail
calls=${1:-12000} rate=${2:-1000} hold=${3:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/bench.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:15060"]
[store]
path = "$work/bench.db"
[api]
listen = "127.0.0.1:18080"
[log]
level = "warn"
TOML
"$root/bin/sipanchor" serve -c "$work/bench.toml" >"$work/sipanchor.log" 2>&1 & pid=$!
sleep 1
ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }
t0=$(ticks); s0=$(date +%s.%N)
out=$("$root/scripts/sipp-calls.sh" 127.0.0.1:15060 "$calls" "$rate" "$hold" 2>&1 || true)
t1=$(ticks); s1=$(date +%s.%N)
ok=$(echo "$out" | awk -F'|' '/Successful call/ {gsub(/ /,"",$3); print $3}' | tail -1)
failed=$(echo "$out" | awk -F'|' '/Failed call/ {gsub(/ /,"",$3); print $3}' | tail -1)
sleep 1
health=$(curl -s 127.0.0.1:18080/api/v1/health)
awk -v c="$calls" -v r="$rate" -v h="$hold" -v ok="$ok" -v f="$failed" -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" 'BEGIN {
	dt = t1 - t0; el = s1 - s0
	printf "SIP with media anchored: %d calls offered at %d/s, %d ms each, over %.1f s\n", c, r, h, el
	printf "  successful %d, failed %d (%.3f%%)\n", ok, f, (ok+f) ? 100*f/(ok+f) : 100
	printf "  sipanchor CPU: %.1f s, %.2f ms per call\n", dt/100, dt*10/c
}'
echo "  after the run: $health"
grep -m3 -E "level=(WARN|ERROR)" "$work/sipanchor.log" || true

#!/usr/bin/env bash
# SIP capacity ramp with media anchored, the system under test pinned to one
# core and the load to the other: bin/sipanchor runs under `taskset -c 0`,
# SIPp (scripts/sipp-calls.sh) under `taskset -c 1`. For each rate it places
# RATE×STEP_S calls of HOLD ms (INVITE with SDP → 200 with SDP → ACK → BYE;
# every call gets relay ports), then reports failed calls, how many of them
# sipanchor refused with 503 to shed load (sipanchor_sip_limited_total),
# and its peak RSS during the step (VmRSS sampled every 200 ms). Not a test:
# numbers for the README. Needs sip-tester; BENCH_EXTRA adds config lines.
#   scripts/bench-ramp.sh [RATES=200,400,600,800,1000,1200] [STEP_S=10] [HOLD=2000]
set -euo pipefail
rates=${1:-200,400,600,800,1000,1200} step=${2:-10} hold=${3:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/bench.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:15060"]
[media]
port_min = 20000
port_max = 59999
[store]
path = "$work/bench.db"
[api]
listen = "127.0.0.1:18080"
[log]
level = "warn"
# SIPp's two addresses are a trusted trunk: not banned for their rate.
[[peer]]
name = "sipp"
networks = ["127.0.0.6/32", "127.0.0.7/32"]
TOML
if [ -n "${BENCH_EXTRA:-}" ]; then printf '%s\n' "$BENCH_EXTRA" >> "$work/bench.toml"; fi
taskset -c 0 "$root/bin/sipanchor" serve -c "$work/bench.toml" >"$work/sipanchor.log" 2>&1 & pid=$!
for _ in $(seq 50); do curl -sf 127.0.0.1:18080/api/v1/health >/dev/null && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "sipanchor pinned to CPU 0, SIPp to CPU 1; idle RSS $(( $(rss) / 1024 )) MB"
limited() { curl -s 127.0.0.1:18080/metrics | awk '/^sipanchor_sip_limited_total/ {n += $2} END {print n+0}'; }
printf '%8s %8s %8s %8s %10s %8s %12s\n' rate offered ok failed failed% shed503 peak_RSS_MB
IFS=, read -ra list <<< "$rates"
for rate in "${list[@]}"; do
	calls=$(( rate * step ))
	shed0=$(limited)
	( while kill -0 $pid 2>/dev/null; do r=$(rss); echo "$r"; sleep 0.2; done ) > "$work/rss.$rate" & sampler=$!
	out=$(taskset -c 1 "$root/scripts/sipp-calls.sh" 127.0.0.1:15060 "$calls" "$rate" "$hold" 2>&1 || true)
	kill $sampler 2>/dev/null || true; wait $sampler 2>/dev/null || true
	peak=$(sort -n "$work/rss.$rate" | tail -1)
	ok=$(echo "$out" | awk -F'|' '/Successful call/ {gsub(/ /,"",$3); print $3}' | tail -1)
	failed=$(echo "$out" | awk -F'|' '/Failed call/ {gsub(/ /,"",$3); print $3}' | tail -1)
	shed=$(( $(limited) - shed0 ))
	awk -v r="$rate" -v c="$calls" -v ok="${ok:-0}" -v f="${failed:-0}" -v p="${peak:-0}" -v s="$shed" 'BEGIN {
		printf "%8d %8d %8d %8d %9.2f%% %8d %12.0f\n", r, c, ok, f, (ok+f) ? 100*f/(ok+f) : 100, s, p/1024 }'
	# Let the calls of this step end before the next.
	for _ in $(seq 100); do
		d=$(curl -s 127.0.0.1:18080/api/v1/health | tr -d ' \n' | sed -n 's/.*"dialogs":\([0-9]*\).*/\1/p')
		[ "${d:-1}" = 0 ] && break; sleep 0.2
	done
done
echo "after the ramp: $(curl -s 127.0.0.1:18080/api/v1/health | tr -d ' \n' | grep -oE '"(dialogs|relay_sessions|port_pairs_used|goroutines|open_files)":[0-9]+' | tr '\n' ' ')"
grep -m5 -E "level=(WARN|ERROR)" "$work/sipanchor.log" || true

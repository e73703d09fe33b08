#!/usr/bin/env bash
# Place CALLS calls at RATE per second through a running sipanchor with SIPp:
# a SIPp UAS registers as sippuas@example.test on 127.0.0.6, a SIPp UAC calls it.
#   scripts/sipp-calls.sh [PROXY=127.0.0.1:5060] [CALLS=100] [RATE=10]
set -euo pipefail
proxy=${1:-127.0.0.1:5060} calls=${2:-100} rate=${3:-10}
scen=$(cd "$(dirname "$0")/../testdata/sipp" && pwd)
uas=; work=$(mktemp -d); trap '[ -n "$uas" ] && kill $uas 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
sipp -sf "$scen/register.xml" "$proxy" -s sippuas -i 127.0.0.6 -p 5099 -m 1 -nostdin -timeout 10s >/dev/null
sipp -sf "$scen/uas.xml" -i 127.0.0.6 -p 5099 -m "$calls" -nostdin -timeout 120s >uas.log 2>&1 & uas=$!
sleep 0.3
sipp -sf "$scen/uac.xml" "$proxy" -s sippuas -i 127.0.0.7 -p 5098 -m "$calls" -r "$rate" -nostdin -timeout 120s
wait $uas && echo "all $calls calls completed"

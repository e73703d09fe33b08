#!/usr/bin/env bash
# Place CALLS calls at RATE per second, each lasting HOLD ms, through a
# running sipanchor with SIPp: a SIPp UAS registers as sippuas@example.test
# on 127.0.0.6, a SIPp UAC calls it with an SDP offer; the UAS answers
# with SDP, so every call is anchored when [relay] engage = "always".
#   scripts/sipp-calls.sh [PROXY=127.0.0.1:5060] [CALLS=100] [RATE=10] [HOLD=200]
set -euo pipefail
proxy=${1:-127.0.0.1:5060} calls=${2:-100} rate=${3:-10} hold=${4:-200}
scen=$(cd "$(dirname "$0")/../testdata/sipp" && pwd)
uas=; work=$(mktemp -d); trap '[ -n "$uas" ] && kill $uas 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
sipp -sf "$scen/register.xml" "$proxy" -s sippuas -i 127.0.0.6 -p 5099 -m 1 -nostdin -timeout 10s >/dev/null
sipp -sf "$scen/uas.xml" -i 127.0.0.6 -p 5099 -m "$calls" -nostdin -timeout 300s >uas.log 2>&1 & uas=$!
sleep 0.3
sipp -sf "$scen/uac.xml" "$proxy" -s sippuas -i 127.0.0.7 -p 5098 -m "$calls" -r "$rate" -d "$hold" -l $((rate * (hold / 1000 + 3))) -nostdin -timeout 300s
wait $uas && echo "all $calls calls completed"

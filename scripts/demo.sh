#!/usr/bin/env bash
# Starts the demo service, attaches tcagent with the shipped probe file and
# --propagate (the audit call then carries its trace context), sends
# a few requests and prints the trace trees tcagent draws. Run via `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "demo: tcagent loads eBPF programs: run as root" >&2
	exit 1
fi
addr=127.0.0.1:${DEMO_PORT:-8765}
log=$(mktemp)
./bin/demo -addr "$addr" 2>/dev/null &
demo=$!
agent=
cleanup() {
	[ -n "$agent" ] && kill -INT "$agent" 2>/dev/null && wait "$agent" 2>/dev/null || true
	kill "$demo" 2>/dev/null || true
	rm -f "$log"
}
trap cleanup EXIT
for _ in $(seq 50); do
	./bin/demo -drive "http://$addr" -ping 2>/dev/null && break
	sleep 0.1
done
./bin/tcagent attach --pid "$demo" --probes examples/demo/probes.yaml --exporter stdout --propagate 2>"$log" &
agent=$!
for _ in $(seq 100); do
	grep -q attached "$log" && break
	if ! kill -0 "$agent" 2>/dev/null; then cat "$log" >&2; exit 1; fi
	sleep 0.1
done
grep attached "$log" >&2
./bin/demo -drive "http://$addr"
sleep 0.3
kill -INT "$agent"
wait "$agent"
agent=
tail -n 1 "$log" >&2

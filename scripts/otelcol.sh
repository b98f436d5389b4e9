#!/usr/bin/env bash
# Builds the test Collector (kernel-tests/testdata/otelcol/builder.yaml) once
# and caches it; prints the binary's path. Everything comes from the Go
# module proxy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TCAGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcagent}
config=$root/kernel-tests/testdata/otelcol/builder.yaml
key=$(sha256sum "$config" | cut -c1-16)
bin=$cache/otelcol-$key/otelcol-tcagent
if [ ! -x "$bin" ]; then
	mkdir -p "$cache/otelcol-$key"
	export GOFLAGS=-buildvcs=false
	GOBIN=$cache/bin go install go.opentelemetry.io/collector/cmd/builder@v0.165.0 >&2
	work=$(mktemp -d)
	cp "$config" "$work/builder.yaml"
	(cd "$work" && "$cache/bin/builder" --config builder.yaml >&2)
	cp "$work/otelcol-tcagent/otelcol-tcagent" "$bin.tmp"
	mv "$bin.tmp" "$bin"
	rm -rf "$work"
fi
echo "$bin"

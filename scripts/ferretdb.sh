#!/usr/bin/env bash
# Builds the mongo set's test server once and caches it; prints the
# binary's path: FerretDB (a MongoDB wire-protocol server over SQLite; no
# MongoDB server is packaged for Debian), embedded in a small program
# (kernel-tests/testdata/ferretdb), everything from the Go module proxy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TCAGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcagent}
src=$root/kernel-tests/testdata/ferretdb
key=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)
bin=$cache/ferretdb-$key/ferretdb
if [ ! -x "$bin" ]; then
	mkdir -p "$cache/ferretdb-$key"
	(cd "$src" && GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -o "$bin.tmp" .) >&2
	mv "$bin.tmp" "$bin"
fi
echo "$bin"

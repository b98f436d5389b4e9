#!/usr/bin/env bash
# Builds helm once from the Go module proxy and caches it; prints the
# binary's path. The deploy tests and `make manifest` run it.
set -euo pipefail
version=v3.22.0
cache=${TCAGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcagent}
bin=$cache/helm-$version/helm
if [ ! -x "$bin" ]; then
	mkdir -p "$cache/helm-$version"
	GOFLAGS=-buildvcs=false GOBIN=$cache/helm-$version.tmp go install helm.sh/helm/v3/cmd/helm@$version >&2
	mv "$cache/helm-$version.tmp/helm" "$bin"
	rmdir "$cache/helm-$version.tmp"
fi
echo "$bin"

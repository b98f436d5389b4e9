#!/usr/bin/env bash
# Installs and fetches what the tests need, so that `make test` on a fresh
# machine (Debian or Ubuntu, as root) is all a newcomer runs; `.ci/run` runs
# it through `make test` too. Idempotent and quiet: when everything is there
# it installs nothing and prints nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

if [ "$(id -u)" != 0 ]; then
	echo "scripts/test-setup.sh: run as root (it installs packages, and the kernel tests load eBPF programs)" >&2
	exit 1
fi

# Programs the tests run for real, each checked by the command a test looks
# for:
# - prometheus and promtool: a real Prometheus scrapes the agent;
# - pg_ctl (postgresql), redis-server: the SQL and Redis tests start their
#   own throwaway servers on free ports;
# - curl: a plain HTTP client that sends trace context;
# - setpriv (util-linux): the agent runs with chosen capabilities;
# - clang-19, llvm-strip-19 (llvm-19), libbpf-dev: the BPF objects are
#   rebuilt and compared with the committed ones (bpf/bpf_test.go).
# The OpenTelemetry Collector and FerretDB (a MongoDB server) come from the
# module proxy (below).
missing=()
need() { command -v "$1" >/dev/null || missing+=("$2"); }
need prometheus prometheus
need promtool prometheus
need redis-server redis-server
need curl curl
need setpriv util-linux
need clang-19 clang-19
need llvm-strip-19 llvm-19
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
if [ ${#missing[@]} -gt 0 ]; then
	echo "test-setup: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	# The packages start services the tests do not use (the tests run
	# their own instances on free ports); stop what the install started.
	systemctl stop prometheus postgresql redis-server 2>/dev/null || true
fi

# Go toolchain prefetches live here: every release a test builds with
# (GOTOOLCHAIN=goX.Y.Z), fetched through the module proxy up front so that
# a download is not charged to a test's timeout. A test that builds with a
# new release adds its line here. `go version` prints the version; once the
# toolchain is in the module cache it downloads nothing.
GOTOOLCHAIN=go1.21.13 go version >/dev/null
GOTOOLCHAIN=go1.22.12 go version >/dev/null
GOTOOLCHAIN=go1.27.3 go version >/dev/null
# probes' machine-code test also reads the first 1.27 release.
GOTOOLCHAIN=go1.27.0 go version >/dev/null
# tools/offsetgen's tests, and probes' test of reading runtime.g's offsets
# from machine code, build a reference program with every release the
# offsets table lists.
for tc in $(sed -n 's/^var releases = \[\]string{\(.*\)}$/\1/p' tools/offsetgen/main.go | tr -d '",'); do
	GOTOOLCHAIN=$tc go version >/dev/null
done

# The routes fixture's routers, every module set (its oldest releases, for
# Go 1.22 and 1.23, and its newest), so that their download is not charged
# to a test either.
(cd kernel-tests/testdata/routes && go mod download && go mod download -modfile=go.go122.mod && go mod download -modfile=go.new.mod)

# The deploy tests validate the manifest against Kubernetes' OpenAPI
# schemas, which come with its source module.
go mod download k8s.io/kubernetes@v1.37.2
# The export tests' Collector, built once from the module proxy and cached
# (scripts/otelcol.sh), so that its build is not charged to a test either.
./scripts/otelcol.sh >/dev/null
# The MongoDB tests' server (FerretDB over SQLite), likewise.
./scripts/ferretdb.sh >/dev/null
# The deploy tests' helm (lint and template of the chart), likewise.
./scripts/helm.sh >/dev/null
# The kafka tests' fixture (kafka-go; sarama with go.new.mod) and broker
# (franz-go's kfake, a Kafka-wire-protocol cluster the test builds and runs
# as a process of its own): their modules, fetched up front.
(cd kernel-tests/testdata/kafka && go mod download && go mod download -modfile=go.new.mod && go mod download -modfile=go.s150.mod)
(cd kernel-tests/testdata/kafkabroker && go mod download)
# The mongo tests' fixture, against each driver release it is built with.
(cd kernel-tests/testdata/mongo && for m in go.mod go.v11710.mod go.v28.mod go.v210.mod; do go mod download -modfile=$m; done)

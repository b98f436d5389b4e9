# tcagent — see README.md. `make demo` traces the demo service; `make test`
# installs what the tests need (scripts/test-setup.sh) and runs every test
# (kernel tests load real eBPF and need root: it refuses to run without).
GO ?= go

.PHONY: build generate test test-vm demo lint bench offsets manifest
build:
	$(GO) build -o bin/tcagent ./cmd/tcagent

# Rebuilds the BPF objects and their Go bindings (needs clang-19 and libbpf-dev).
generate:
	cd bpf && $(GO) generate ./

test:
	@test "$$(id -u)" = 0 || { echo "make test: run as root (the kernel tests load eBPF programs; unit tests alone: go test \$$(go list ./... | grep -v kernel-tests))"; exit 1; }
	@./scripts/test-setup.sh
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) test-vm

# The lifecycle and built-in kernel tests inside guests on Debian 12's
# kernel (6.1, no uprobe_multi) under qemu, amd64 and arm64 (ARCH=amd64 or
# ARCH=arm64: one of them); part of make test. One run of the script serves
# both: it builds the fixtures for both guests in one host run.
ARCH ?= amd64 arm64
test-vm:
	./scripts/test-vm.sh $(ARCH)

demo: build
	cd examples/demo && $(GO) build -o ../../bin/demo .
	./scripts/demo.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 ./internal/layout/

# Regenerates the plain manifest from the Helm chart (helm comes from the
# module proxy: scripts/helm.sh).
manifest:
	./deploy/manifest.sh > deploy/kubernetes/daemonset.yaml.tmp
	mv deploy/kubernetes/daemonset.yaml.tmp deploy/kubernetes/daemonset.yaml

offsets:
	$(GO) run ./tools/offsetgen

# All eight overhead benchmarks (as root); bench/README.md records their figures.
bench:
	$(GO) run ./bench/uprobe
	GOMAXPROCS=1 $(GO) test -run '^$$' -bench . -benchmem ./agent/ ./binder/ ./channel/ ./lifecycle/
	$(GO) run ./bench/overhead http
	$(GO) run ./bench/overhead attach
	$(GO) run ./bench/overhead rss
	$(GO) run ./bench/overhead daemon
	$(GO) run ./bench/overhead scale
	$(GO) run ./bench/http

#!/usr/bin/env bash
# Runs a subset of the kernel tests inside a guest booted on Debian 12's
# kernel (6.1: no uprobe_multi, so every attach takes the single-uprobe
# path), under qemu, on an amd64 or an arm64 guest. The guest has no Go
# toolchain and no disk: the host builds the kernel-tests binary and every
# fixture it needs (running the same subset on the host once, as the
# control; for arm64 every fixture is built a second time, for the guest),
# packs them with a static busybox into an initramfs, boots it and prints
# the guest's test output. The exit status is the guest's.
#
# Usage: scripts/test-vm.sh [amd64|arm64]   (as root; make test-vm)
#
# The arm64 guest's kernel, busybox and dynamic loader (for PIE fixtures)
# come from Debian 12's arm64 packages, fetched with an apt state of their
# own under the cache directory: the host's dpkg architectures and package
# lists are left alone.
#
# This machine's /dev/kvm does not run guests (a nested VM: the guest never
# leaves the firmware), so the guest runs under qemu's software emulation
# (TCG), about 20 times slower than the host: the subset is chosen to cover
# each lifecycle rule and the built-ins once, not every Go build.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

arch=${1:-amd64}
case "$arch" in
amd64 | arm64) ;;
*)
	echo "scripts/test-vm.sh: unsupported guest architecture $arch (amd64 or arm64)" >&2
	exit 1
	;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "scripts/test-vm.sh: run as root (it installs packages, and the host run loads eBPF programs)" >&2
	exit 1
fi

# What each lifecycle rule and trap needs once, plus the built-ins that need
# no server outside the fixture: custom probes (nesting, recursion, errors,
# stack growth), goroutines, async completion, panics and Goexit, the
# target exiting, detach with no link or goroutine left, the single-uprobe
# path, the http and SQLite built-ins; the daemon's exec/exit tracepoints
# and the CLI daemon; --propagate's socket programs on the wire.
# TCAGENT_VM_FULL=1 prints the guest's whole test output (verifier logs
# and all), not only the results and the failures' first lines;
# TCAGENT_VM_COUNT=N runs the guest's tests N times (an intermittent fault).
full=${TCAGENT_VM_FULL:-}
tests=${TCAGENT_VM_TESTS:-'^(TestNestedCalls|TestRecursion|TestReturnedErrors|TestStackGrowthOnEntry|TestGoroutineLineage|TestAsyncGoroutinesProbe|TestCompletionHandles|TestPanicsAndGoexit|TestTargetExitsWhileAttached|TestDetachLeavesNoGoroutine|TestSingleUprobeFallback|TestBuiltinHTTP|TestBuiltinSQLite|TestDiscover|TestCLIDaemon|TestPropagateWire)$'}

missing=()
case "$arch" in
amd64)
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
	[ -x /bin/busybox ] && /bin/busybox --list | grep -qx ip || missing+=(busybox-static)
	;;
arm64) command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm) ;;
esac
command -v cpio >/dev/null || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ]; then
	echo "test-vm: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cache=${TCAGENT_VM_CACHE:-/var/cache/tcagent-vm}
mkdir -p "$cache"
# apt for the guest's packages: the host's own for amd64; for arm64, a
# private state (sources: Debian 12's main, security and updates) that
# knows arm64 packages only.
apt=()
if [ "$arch" = arm64 ]; then
	st=$cache/apt-arm64
	mkdir -p "$st/lists/partial" "$st/archives/partial"
	touch "$st/status"
	printf '%s\n' 'deb http://deb.debian.org/debian bookworm main' \
		'deb http://deb.debian.org/debian bookworm-updates main' \
		'deb http://deb.debian.org/debian-security bookworm-security main' >"$st/sources.list"
	apt=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Dir::State="$st"
		-o Dir::State::Lists="$st/lists" -o Dir::State::status="$st/status" -o Dir::Cache="$st"
		-o Dir::Etc::SourceList="$st/sources.list" -o Dir::Etc::SourceParts=/dev/null)
fi
# Debian 12's kernel: the version its linux-image-$arch points at today
# (apt-cache fails where the package lists were never fetched: a fresh
# machine's arm64 state).
pkg=$({ apt-cache "${apt[@]}" depends "linux-image-$arch" 2>/dev/null || true; } | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
	apt-get "${apt[@]}" update -qq
	pkg=$(apt-cache "${apt[@]}" depends "linux-image-$arch" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
# What the guest needs from Debian: the kernel; for arm64 also busybox and
# the dynamic loader Go's PIE builds name as their interpreter (the host's
# serve amd64).
kernel=$cache/$pkg.vmlinuz
guestroot=$cache/$pkg.root
if [ ! -f "$kernel" ] || { [ "$arch" = arm64 ] && [ ! -d "$guestroot" ]; }; then
	echo "test-vm: fetching $pkg" >&2
	debs=("$pkg")
	[ "$arch" = arm64 ] && debs+=(busybox-static libc6)
	dl=$(mktemp -d)
	chmod 755 "$dl"
	(cd "$dl" && apt-get "${apt[@]}" download -q "${debs[@]}" >/dev/null 2>&1)
	for d in "$dl"/*.deb; do dpkg -x "$d" "$dl/root"; done
	if [ "$arch" = arm64 ]; then
		rm -rf "$guestroot"
		mkdir -p "$guestroot/bin" "$guestroot/lib"
		cp "$dl/root/bin/busybox" "$guestroot/bin/"
		cp -L "$dl/root/lib/ld-linux-aarch64.so.1" "$guestroot/lib/"
	fi
	cp "$dl"/root/boot/vmlinuz-* "$kernel"
	rm -rf "$dl"
fi

work=$(mktemp -d /tmp/tcagent-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,fixtures,kt}
CGO_ENABLED=0 go test -c -o "$work/kernel-tests.test" ./kernel-tests/
if [ "$arch" = "$(go env GOARCH)" ]; then
	cp "$work/kernel-tests.test" "$root/kt/"
else
	CGO_ENABLED=0 GOARCH=$arch go test -c -o "$root/kt/kernel-tests.test" ./kernel-tests/
fi

# The host run builds each fixture and saves it, built for the guest, where
# the guest finds it.
echo "test-vm: host run (builds the fixtures)" >&2
(cd kernel-tests && TCAGENT_FIXTURES="$root/fixtures" TCAGENT_FIXTURES_GOARCH=$arch \
	"$work/kernel-tests.test" -test.count=1 -test.timeout=15m -test.run "$tests") >"$work/host.log" 2>&1 || {
	cat "$work/host.log" >&2
	echo "test-vm: the subset fails on the host already" >&2
	exit 1
}

# Go's PIE builds name the dynamic loader as their interpreter (and need
# no library).
if [ "$arch" = arm64 ]; then
	cp -r "$guestroot"/. "$root/"
else
	cp /bin/busybox "$root/bin/busybox"
	mkdir -p "$root/lib64"
	cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
fi
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
echo "guest: kernel \$(uname -r), \$(nproc) cpus"
cd /kt
TCAGENT_FIXTURES=/fixtures ./kernel-tests.test -test.v -test.count=${TCAGENT_VM_COUNT:-1} -test.timeout=40m -test.run '$tests' > /tmp/out 2>&1
rc=\$?
if [ -n "$full" ]; then cat /tmp/out; else grep -E '^ *--- (PASS|FAIL|SKIP)|^(ok|FAIL|PASS)\\b|^ +[a-z_]+_test\\.go:[0-9]+:' /tmp/out; fi
echo "tcagent-vm: rc=\$rc"
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# arm64: qemu's virt board; pauth-impdef spares TCG the architected
# pointer-authentication hash, the slowest part of emulating -cpu max.
case "$arch" in
amd64) qemu=(qemu-system-x86_64 -cpu max) console=ttyS0 ;;
arm64) qemu=(qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on) console=ttyAMA0 ;;
esac
echo "test-vm: booting $pkg under qemu (software emulation)" >&2
timeout 50m "${qemu[@]}" -accel tcg -m 4096 -smp 2 -nographic -no-reboot -net none \
	-kernel "$kernel" -initrd "$work/initrd.gz" \
	-append "console=$console quiet panic=-1 rdinit=/init" </dev/null | tr -d '\r' | tee "$work/guest.log" | grep -v '^\[ *[0-9.]*\]' || true
rc=$(sed -n 's/^tcagent-vm: rc=\([0-9]*\)$/\1/p' "$work/guest.log")
if [ -z "$rc" ]; then
	echo "test-vm: the guest printed no result (crashed or timed out)" >&2
	exit 1
fi
exit "$rc"

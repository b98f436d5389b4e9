#!/usr/bin/env bash
# Runs a subset of the kernel tests inside a guest booted on Debian 12's
# kernel (6.1: no uprobe_multi, so every attach takes the single-uprobe
# path), under qemu. The guest has no Go toolchain and no disk: the host
# builds the kernel-tests binary and every fixture it needs (running the
# same subset on the host once, as the control), packs them with a static
# busybox into an initramfs, boots it and prints the guest's test output.
# The exit status is the guest's.
#
# Usage: scripts/test-vm.sh [amd64]   (as root; make test-vm)
#
# This machine's /dev/kvm does not run guests (a nested VM: the guest never
# leaves the firmware), so the guest runs under qemu's software emulation
# (TCG), about 20 times slower than the host: the subset is chosen to cover
# each lifecycle rule and the built-ins once, not every Go build.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

arch=${1:-amd64}
if [ "$arch" != amd64 ]; then
	echo "scripts/test-vm.sh: unsupported guest architecture $arch (amd64 only)" >&2
	exit 1
fi
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
tests=${TCAGENT_VM_TESTS:-'^(TestNestedCalls|TestRecursion|TestReturnedErrors|TestStackGrowthOnEntry|TestGoroutineLineage|TestAsyncGoroutinesProbe|TestCompletionHandles|TestPanicsAndGoexit|TestTargetExitsWhileAttached|TestDetachLeavesNoGoroutine|TestSingleUprobeFallback|TestBuiltinHTTP|TestBuiltinSQLite|TestDiscover|TestCLIDaemon|TestPropagateWire)$'}

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list | grep -qx ip || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ]; then
	echo "test-vm: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cache=${TCAGENT_VM_CACHE:-/var/cache/tcagent-vm}
mkdir -p "$cache"
# Debian 12's kernel: the version its linux-image-amd64 points at today.
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
	apt-get update -qq
	pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
kernel=$cache/$pkg.vmlinuz
if [ ! -f "$kernel" ]; then
	echo "test-vm: fetching $pkg" >&2
	dl=$(mktemp -d)
	(cd "$dl" && apt-get download -q "$pkg" >/dev/null 2>&1)
	dpkg -x "$dl"/*.deb "$dl/root"
	cp "$dl"/root/boot/vmlinuz-* "$kernel"
	rm -rf "$dl"
fi

work=$(mktemp -d /tmp/tcagent-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,fixtures,kt}
CGO_ENABLED=0 go test -c -o "$root/kt/kernel-tests.test" ./kernel-tests/

# The host run builds each fixture and saves it where the guest finds it.
echo "test-vm: host run (builds the fixtures)" >&2
(cd kernel-tests && TCAGENT_FIXTURES="$root/fixtures" \
	"$root/kt/kernel-tests.test" -test.count=1 -test.timeout=15m -test.run "$tests") >"$work/host.log" 2>&1 || {
	cat "$work/host.log" >&2
	echo "test-vm: the subset fails on the host already" >&2
	exit 1
}

cp /bin/busybox "$root/bin/busybox"
# Go's PIE builds name the dynamic loader as their interpreter (and need
# no library).
mkdir -p "$root/lib64"
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
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
TCAGENT_FIXTURES=/fixtures ./kernel-tests.test -test.v -test.count=1 -test.timeout=40m -test.run '$tests' > /tmp/out 2>&1
rc=\$?
grep -E '^ *--- (PASS|FAIL|SKIP)|^(ok|FAIL|PASS)\\b|^ +[a-z_]+_test\\.go:[0-9]+:' /tmp/out
echo "tcagent-vm: rc=\$rc"
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

echo "test-vm: booting $pkg under qemu (software emulation)" >&2
timeout 50m qemu-system-x86_64 -accel tcg -cpu max -m 4096 -smp 2 -nographic -no-reboot -net none \
	-kernel "$kernel" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 rdinit=/init" </dev/null | tr -d '\r' | tee "$work/guest.log" | grep -v '^\[ *[0-9.]*\]' || true
rc=$(sed -n 's/^tcagent-vm: rc=\([0-9]*\)$/\1/p' "$work/guest.log")
if [ -z "$rc" ]; then
	echo "test-vm: the guest printed no result (crashed or timed out)" >&2
	exit 1
fi
exit "$rc"

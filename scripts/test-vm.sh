#!/usr/bin/env bash
# Runs a subset of the kernel tests inside guests booted on Debian 12's
# kernel (6.1: no uprobe_multi, so every attach takes the single-uprobe
# path), under qemu, amd64 and/or arm64. The guests have no Go toolchain
# and no disk: the host builds the kernel-tests binary for each and every
# fixture the subset needs, by running the subset on the host once, as the
# control (it builds each fixture for itself and saves it built for each
# guest's architecture: one control run serves both guests), packs them
# with a static busybox into an initramfs per guest, boots them side by side and
# prints their test output. The exit status is 0 when every guest passed.
#
# Usage: scripts/test-vm.sh [amd64] [arm64]   (as root; make test-vm;
# no argument: amd64)
#
# The arm64 guest's kernel, busybox and dynamic loader (for PIE fixtures)
# come from Debian 12's arm64 packages, fetched with an apt state of their
# own under the cache directory: the host's dpkg architectures and package
# lists are left alone.
#
# This machine's /dev/kvm does not run guests (a nested VM: the guest never
# leaves the firmware), so the guests run under qemu's software emulation
# (TCG), about 20 times slower than the host: the subset is chosen to cover
# each lifecycle rule and the built-ins once, and each test runs on three
# builds of its fixture, not on every one (TCAGENT_VM_BUILDS): the host
# suite covers every Go release, on 6.18, and the arm64 placement of each
# release the kernel tests build with is checked statically (probes' TestPlaceARM64).
#
# Knobs (environment):
#   TCAGENT_VM_TESTS   another -run pattern for the guests (and the control)
#   TCAGENT_VM_BUILDS  the fixture builds the tests run on (the harness's
#                      TCAGENT_BUILDS): default the oldest and the newest
#                      release, and the newest's stripped PIE build; "all"
#                      for every build
#   TCAGENT_VM_COUNT   runs each test that many times in the guests
#                      (-test.count; default 1)
#   TCAGENT_VM_FULL=1  prints the guests' whole test output (verifier logs
#                      and all), not only the results and the failures'
#                      first lines
#   TCAGENT_VM_CACHE   where the Debian packages are kept
#                      (/var/cache/tcagent-vm)
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64)
for arch in "${archs[@]}"; do
	case "$arch" in
	amd64 | arm64) ;;
	*)
		echo "scripts/test-vm.sh: unsupported guest architecture $arch (amd64 or arm64)" >&2
		exit 1
		;;
	esac
done
if [ "$(id -u)" != 0 ]; then
	echo "scripts/test-vm.sh: run as root (it installs packages, and the host run loads eBPF programs)" >&2
	exit 1
fi

full=${TCAGENT_VM_FULL:-}
count=${TCAGENT_VM_COUNT:-1}
case "$count" in
'' | *[!0-9]* | 0)
	echo "scripts/test-vm.sh: TCAGENT_VM_COUNT=$count: want a count of runs, 1 or more" >&2
	exit 1
	;;
esac
# The oldest and the newest Go release the tests build with, and the
# newest's stripped PIE build (as distributions build Go programs).
builds=${TCAGENT_VM_BUILDS:-go1.22,go1.27,go1.27-pie-stripped}
[ "$builds" = all ] && builds=

# The subset: what each lifecycle rule and trap needs once, plus the
# built-ins that need no server outside the fixture: custom probes
# (nesting, recursion, errors, stack growth), goroutines, async completion,
# panics and Goexit, the target exiting, detach with no link or goroutine
# left, the single-uprobe path, the http, SQLite and routes built-ins; the daemon's
# exec/exit tracepoints and the CLI daemon; --propagate's socket programs
# on the wire.
tests=${TCAGENT_VM_TESTS:-'^(TestNestedCalls|TestRecursion|TestReturnedErrors|TestStackGrowthOnEntry|TestGoroutineLineage|TestAsyncGoroutinesProbe|TestCompletionHandles|TestPanicsAndGoexit|TestTargetExitsWhileAttached|TestDetachLeavesNoGoroutine|TestSingleUprobeFallback|TestBuiltinHTTP|TestBuiltinSQLite|TestBuiltinRoutes|TestDiscover|TestCLIDaemon|TestPropagateWire)$'}

missing=()
for arch in "${archs[@]}"; do
	case "$arch" in
	amd64)
		command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
		[ -x /bin/busybox ] && /bin/busybox --list | grep -qx ip || missing+=(busybox-static)
		;;
	arm64) command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm) ;;
	esac
done
command -v cpio >/dev/null || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ]; then
	echo "test-vm: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cache=${TCAGENT_VM_CACHE:-/var/cache/tcagent-vm}
mkdir -p "$cache"
work=$(mktemp -d /tmp/tcagent-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT

# fetchKernel fetches what the guest for the architecture $1 needs from
# Debian when the cache lacks it: the kernel; for arm64 also busybox and the
# dynamic loader Go's PIE builds name as their interpreter (the host's serve
# amd64). It sets pkg[$1], kernel[$1] and guestroot[$1].
declare -A pkg kernel guestroot
fetchKernel() {
	local arch=$1 p k g
	# apt for the guest's packages: the host's own for amd64; for arm64, a
	# private state (sources: Debian 12's main, security and updates) that
	# knows arm64 packages only.
	local apt=()
	if [ "$arch" = arm64 ]; then
		local st=$cache/apt-arm64
		mkdir -p "$st/lists/partial" "$st/archives/partial"
		touch "$st/status"
		printf '%s\n' 'deb http://deb.debian.org/debian bookworm main' \
			'deb http://deb.debian.org/debian bookworm-updates main' \
			'deb http://deb.debian.org/debian-security bookworm-security main' >"$st/sources.list"
		apt=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Dir::State="$st"
			-o Dir::State::Lists="$st/lists" -o Dir::State::status="$st/status" -o Dir::Cache="$st"
			-o Dir::Etc::SourceList="$st/sources.list" -o Dir::Etc::SourceParts=/dev/null)
	fi
	# Debian 12's kernel: the version its linux-image-$arch points at today.
	# (apt-cache fails where the package lists were never fetched: a fresh
	# machine's arm64 state).
	p=$({ apt-cache "${apt[@]}" depends "linux-image-$arch" 2>/dev/null || true; } | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	if [ -z "$p" ]; then
		apt-get "${apt[@]}" update -qq
		p=$(apt-cache "${apt[@]}" depends "linux-image-$arch" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	fi
	k=$cache/$p.vmlinuz
	g=$cache/$p.root
	pkg[$arch]=$p kernel[$arch]=$k guestroot[$arch]=$g
	if [ ! -f "$k" ] || { [ "$arch" = arm64 ] && [ ! -d "$g" ]; }; then
		echo "test-vm: fetching $p" >&2
		local debs=("$p")
		[ "$arch" = arm64 ] && debs+=(busybox-static libc6)
		local dl
		dl=$(mktemp -d)
		chmod 755 "$dl"
		(cd "$dl" && apt-get "${apt[@]}" download -q "${debs[@]}" >/dev/null 2>&1)
		for d in "$dl"/*.deb; do dpkg -x "$d" "$dl/root"; done
		if [ "$arch" = arm64 ]; then
			rm -rf "$g"
			mkdir -p "$g/bin" "$g/lib"
			cp "$dl/root/bin/busybox" "$g/bin/"
			cp -L "$dl/root/lib/ld-linux-aarch64.so.1" "$g/lib/"
		fi
		cp "$dl"/root/boot/vmlinuz-* "$k"
		rm -rf "$dl"
	fi
}
for arch in "${archs[@]}"; do fetchKernel "$arch"; done

# Each guest's root: the test binary built for it, and the fixtures the
# control run saves there.
hostarch=$(go env GOARCH)
saves=()
for arch in "${archs[@]}"; do
	root=$work/$arch/root
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,fixtures,kt}
	saves+=("$arch=$root/fixtures")
	CGO_ENABLED=0 GOARCH=$arch go test -c -o "$root/kt/kernel-tests.test" ./kernel-tests/
done
if [ -f "$work/$hostarch/root/kt/kernel-tests.test" ]; then
	hostbin=$work/$hostarch/root/kt/kernel-tests.test
else
	hostbin=$work/kernel-tests.test
	CGO_ENABLED=0 go test -c -o "$hostbin" ./kernel-tests/
fi

# The control: the subset, once, on the host, which builds each fixture
# and saves it, built for each guest, where that guest finds it.
echo "test-vm: host run (builds the fixtures for ${archs[*]})" >&2
(cd kernel-tests && TCAGENT_FIXTURES_SAVE="${saves[*]}" TCAGENT_BUILDS=$builds \
	"$hostbin" -test.count=1 -test.timeout=15m -test.run "$tests") >"$work/host.log" 2>&1 || {
	cat "$work/host.log" >&2
	echo "test-vm: the subset fails on the host already" >&2
	exit 1
}

# initramfs packs the root of the guest for the architecture $1.
initramfs() {
	local arch=$1 root=$work/$1/root
	# Go's PIE builds name the dynamic loader as their interpreter (and need
	# no library).
	if [ "$arch" = arm64 ]; then
		cp -r "${guestroot[$arch]}"/. "$root/"
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
TCAGENT_FIXTURES=/fixtures TCAGENT_BUILDS=$builds ./kernel-tests.test -test.v -test.count=$count -test.timeout=40m -test.run '$tests' > /tmp/out 2>&1
rc=\$?
if [ -n "$full" ]; then cat /tmp/out; else grep -E '^ *--- (PASS|FAIL|SKIP)|^(ok|FAIL|PASS)\\b|^ +[a-z_]+_test\\.go:[0-9]+:' /tmp/out; fi
echo "tcagent-vm: rc=\$rc"
poweroff -f
EOF
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/$arch/initrd.gz"
}

# boot runs the guest for the architecture $1 on its initramfs, its console
# written to its guest.log.
boot() {
	local arch=$1 qemu console
	# arm64: qemu's virt board; pauth-impdef spares TCG the architected
	# pointer-authentication hash, the slowest part of emulating -cpu max.
	case "$arch" in
	amd64) qemu=(qemu-system-x86_64 -cpu max) console=ttyS0 ;;
	arm64) qemu=(qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on) console=ttyAMA0 ;;
	esac
	timeout 50m "${qemu[@]}" -accel tcg -m 4096 -smp 2 -nographic -no-reboot -net none \
		-kernel "${kernel[$arch]}" -initrd "$work/$arch/initrd.gz" \
		-append "console=$console quiet panic=-1 rdinit=/init" </dev/null 2>&1 | tr -d '\r' >"$work/$arch/guest.log" || true
}

# The guests run side by side: each keeps about one host core busy (half
# of its two vCPUs' time is idle, measured in the amd64 guest), so both
# take about as long as the slower one alone. Every guest runs to its end,
# even when another fails: each says what its kernel does.
pids=()
for arch in "${archs[@]}"; do
	initramfs "$arch"
	echo "test-vm: booting ${pkg[$arch]} under qemu (software emulation)" >&2
	boot "$arch" &
	pids+=($!)
done
wait "${pids[@]}"
status=0 summary=()
for arch in "${archs[@]}"; do
	echo "test-vm: the $arch guest (${pkg[$arch]}):" >&2
	grep -v '^\[ *[0-9.]*\]' "$work/$arch/guest.log" || true
	rc=$(sed -n 's/^tcagent-vm: rc=\([0-9]*\)$/\1/p' "$work/$arch/guest.log")
	if [ -z "$rc" ]; then
		echo "test-vm: the $arch guest printed no result (crashed or timed out)" >&2
		rc=1
	fi
	summary+=("$arch rc=$rc")
	[ "$rc" = 0 ] || status=1
done
echo "test-vm: guests: ${summary[*]}" >&2
exit "$status"

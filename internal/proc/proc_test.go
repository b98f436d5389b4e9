package proc

import (
	"os"
	"testing"
)

const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestCgroupV2AndContainerID(t *testing.T) {
	content := "12:cpu:/ignored\n0::/kubepods.slice/cri-containerd-" + id + ".scope\n"
	p, ok := CgroupV2(content)
	if !ok || p != "/kubepods.slice/cri-containerd-"+id+".scope" {
		t.Errorf("CgroupV2 = %q, %v", p, ok)
	}
	if got := ContainerID(content); got != id {
		t.Errorf("ContainerID = %q, want %q", got, id)
	}
	if _, ok := CgroupV2("1:name=systemd:/init.scope\n"); ok {
		t.Error("CgroupV2 found a v2 path in a v1-only file")
	}
	if got := ContainerID("0::/user.slice/session-2.scope\n"); got != "" {
		t.Errorf("ContainerID outside a container = %q", got)
	}
}

func TestMappedAt(t *testing.T) {
	maps := "00400000-00401000 r--p 00001000 fd:01 12 /usr/bin/app\n" +
		"55d0c0000000-55d0c0100000 r--p 00000000 fd:01 12 /usr/bin/my app\n" +
		"7f0000000000-7f0000001000 r--p 00000000 fd:01 13 /lib/libc.so\n"
	if got, ok := mappedAt(maps, "/usr/bin/my app"); !ok || got != 0x55d0c0000000 {
		t.Errorf("mappedAt = %#x, %v", got, ok)
	}
	if _, ok := mappedAt(maps, "/usr/bin/app"); ok {
		t.Error("mappedAt took a mapping not at file offset 0")
	}
	// This process: its executable is mapped.
	if start, err := MappedAt(os.Getpid()); err != nil || start == 0 {
		t.Errorf("MappedAt(self) = %#x, %v", start, err)
	}
}

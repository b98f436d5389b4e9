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

func TestBPFObjects(t *testing.T) {
	a := newBPFAdder()
	ring := "pos:\t0\nflags:\t02000002\nmap_type:\t27\nmax_entries:\t2097152\nmemlock:\t2117960\nmap_id:\t71514\n"
	hash := "map_type:\t1\nmemlock:\t4096\nmap_id:\t7\n"
	prog := "prog_type:\t2\nmemlock:\t8192\nprog_id:\t36368\n"
	link := "link_type:\tuprobe_multi\nlink_id:\t27707\nprog_id:\t36368\nuprobe_cnt:\t2\npid:\t0\npath:\t/tmp/x y\ncookie\t offset\t ref_ctr_offset\n1\t 0x55aca\t 0x0\n2\t 0x55b00\t 0x0\n"
	for _, c := range []string{ring, hash, hash, prog, link, link, "pos:\t0\nflags:\t0100002\n", "link_type:\traw_tracepoint\nlink_id:\t3\n"} {
		a.add(c)
	}
	o := a.o
	if o.Maps != 2 || o.MapBytes != 2117960+4096 || o.RingBufferBytes != 2117960 {
		t.Errorf("maps %d, %d bytes, ring buffers %d bytes", o.Maps, o.MapBytes, o.RingBufferBytes)
	}
	if o.Programs != 1 || o.ProgramBytes != 8192 {
		t.Errorf("programs %d, %d bytes", o.Programs, o.ProgramBytes)
	}
	if o.LinkCount() != 2 || o.Links["uprobe_multi"] != 1 || o.UprobeMulti["/tmp/x y"] != 1 {
		t.Errorf("links %v, uprobe_multi %v", o.Links, o.UprobeMulti)
	}
	// This process holds no BPF object.
	if self, err := BPF(os.Getpid()); err != nil || self.Maps+self.Programs+self.LinkCount() != 0 {
		t.Errorf("BPF(self) = %+v, %v", self, err)
	}
}

package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// BPFObjects are the BPF maps, programs and links a process holds through
// its file descriptors, as /proc/PID/fdinfo tells them: what the kernel
// charges it for (memlock) and where its uprobes are. The daemon's scale
// test and benchmark read the daemon with it from outside, so that they
// hold whatever way the daemon shares its objects.
type BPFObjects struct {
	Maps, Programs int
	// MapBytes and ProgramBytes sum their memlock: the kernel memory they
	// lock. RingBufferBytes is the ring buffers' part of MapBytes.
	MapBytes, ProgramBytes, RingBufferBytes uint64
	// Links counts the links by link_type (uprobe_multi, raw_tracepoint…).
	Links map[string]int
	// UprobeMulti counts the uprobe_multi links by the file they probe.
	UprobeMulti map[string]int
}

// LinkCount is the number of links of every type.
func (o BPFObjects) LinkCount() int {
	n := 0
	for _, c := range o.Links {
		n += c
	}
	return n
}

// BPF reads the BPF objects process pid holds. An object held by several
// descriptors counts once.
func BPF(pid int) (BPFObjects, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return BPFObjects{}, fmt.Errorf("pid %d: list fdinfo: %w", pid, err)
	}
	a := newBPFAdder()
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		a.add(string(b))
	}
	return a.o, nil
}

// bpfAdder sums fdinfo contents, each object once (by its id).
type bpfAdder struct {
	o    BPFObjects
	seen map[string]bool
}

func newBPFAdder() *bpfAdder {
	return &bpfAdder{o: BPFObjects{Links: map[string]int{}, UprobeMulti: map[string]int{}}, seen: map[string]bool{}}
}

// add counts one descriptor's fdinfo content; one that is no BPF object
// counts nothing.
func (a *bpfAdder) add(content string) {
	f := map[string]string{}
	for _, line := range strings.Split(content, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			if _, dup := f[k]; !dup { // a link's offset table comes after its fields
				f[k] = strings.TrimSpace(v)
			}
		}
	}
	memlock, _ := strconv.ParseUint(f["memlock"], 10, 64)
	switch {
	case f["map_type"] != "":
		if a.once("map " + f["map_id"]) {
			a.o.Maps++
			a.o.MapBytes += memlock
			if f["map_type"] == "27" { // BPF_MAP_TYPE_RINGBUF
				a.o.RingBufferBytes += memlock
			}
		}
	case f["prog_type"] != "":
		if a.once("prog " + f["prog_id"]) {
			a.o.Programs++
			a.o.ProgramBytes += memlock
		}
	case f["link_type"] != "":
		if a.once("link " + f["link_id"]) {
			a.o.Links[f["link_type"]]++
			if f["link_type"] == "uprobe_multi" {
				a.o.UprobeMulti[f["path"]]++
			}
		}
	}
}

func (a *bpfAdder) once(id string) bool {
	if a.seen[id] {
		return false
	}
	a.seen[id] = true
	return true
}

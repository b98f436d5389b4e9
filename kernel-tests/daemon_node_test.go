package kerneltests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/daemon"
	iproc "github.com/tcagent/tcagent/internal/proc"
)

// TestDaemonSharedNode: one daemon traces two executables and a
// position-independent one run as three processes, which ASLR maps at
// three addresses, with one set of BPF programs and maps. The three PIE
// processes share one image (one set of uprobe links, the same as with
// one), each traced from its first call though its load bias differs from
// the first's; an image's recipes are cleared once its last process
// exits, and once every process exited no link and no recipe of ours is
// left in the kernel.
func TestDaemonSharedNode(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/kernel/randomize_va_space"); err == nil && strings.TrimSpace(string(b)) == "0" {
		t.Skip("ASLR is off: PIE processes would all be mapped at one address")
	}
	dir := t.TempDir()
	binA, binB := churnBinaries(t, dir)
	pie := filepath.Join(dir, "churn-pie")
	src, _ := filepath.Abs("testdata/churn")
	if err := goBuild(src, pie, toolchains[len(toolchains)-1].toolchain, "-buildmode=pie", "."); err != nil {
		t.Fatal(err)
	}
	d, rec := churnDaemon(t, dir, churnSelector(dir), agent.ImageConfig{})
	baseLinks := bpfLinkFDs(t)
	if n := ourRecipes(t); n != 0 {
		t.Fatalf("%d recipes set before any process was traced", n)
	}
	traced := func(pid int) func() bool { return func() bool { return rec.get(pid).work > 0 } }

	// The first process of each executable: traced once the daemon saw
	// its exec (its first calls may precede its uprobes).
	a1, b1, p1 := startProc(t, binA, "--tag", "a1"), startProc(t, binB, "--tag", "b1"), startProc(t, pie, "--tag", "p1")
	for _, c := range []int{a1.Process.Pid, b1.Process.Pid, p1.Process.Pid} {
		waitFor(t, fmt.Sprintf("pid %d traced", c), traced(c))
	}
	linksPIE, linksA := uprobeLinks(t, pie), uprobeLinks(t, binA)
	recipesAll := ourRecipes(t)
	if linksPIE == 0 || linksA == 0 || recipesAll == 0 {
		t.Fatalf("links of churn-pie %d, of churn-a %d, recipes %d: want some of each", linksPIE, linksA, recipesAll)
	}
	// Two more processes of the PIE executable and one of churn-a, with
	// their executables' uprobes in place: traced from their first call,
	// Boot, whatever address ASLR chose for the PIE ones.
	p2, p3, a2 := startProc(t, pie, "--tag", "p2"), startProc(t, pie, "--tag", "p3"), startProc(t, binA, "--tag", "a2")
	for _, c := range []int{p2.Process.Pid, p3.Process.Pid, a2.Process.Pid} {
		waitFor(t, fmt.Sprintf("pid %d traced", c), traced(c))
	}
	at := map[uint64]bool{}
	for i, c := range []int{p1.Process.Pid, p2.Process.Pid, p3.Process.Pid} {
		start, err := iproc.MappedAt(c)
		if err != nil {
			t.Fatal(err)
		}
		at[start] = true
		if i > 0 {
			tag := fmt.Sprintf("p%d", i+1)
			if got := rec.get(c).boots; len(got) != 1 || got[0] != tag {
				t.Errorf("churn-pie %s (pid %d, mapped at %#x): boot spans %q, want [%s]: not traced from its start", tag, c, start, got, tag)
			}
		}
	}
	if len(at) != 3 {
		t.Errorf("the three PIE processes were mapped at %d addresses, want 3 (ASLR)", len(at))
	}
	if got := rec.get(a2.Process.Pid).boots; len(got) != 1 || got[0] != "a2" {
		t.Errorf("churn-a a2: boot spans %q, want [a2]", got)
	}
	if st := d.Stats(); st.Images != 3 || st.Traced != 6 {
		t.Errorf("6 processes of 3 executables: %d images, %d traced; want 3 and 6", st.Images, st.Traced)
	}
	if n := uprobeLinks(t, pie); n != linksPIE {
		t.Errorf("3 processes of churn-pie: %d uprobe_multi links, want %d as with one (one set, shared)", n, linksPIE)
	}
	if n := ourRecipes(t); n != recipesAll {
		t.Errorf("%d recipes with more processes of the same executables, want %d", n, recipesAll)
	}
	if n, err := d.MemoryLocked(); err != nil || n < 8<<20 {
		t.Errorf("kernel memory locked by the maps: %d, %v; want at least the 8 MiB ring buffer", n, err)
	}

	// churn-b's only process exits: its image goes, links and recipes.
	stopProc(b1)
	waitFor(t, "churn-b's image released", func() bool { return d.Stats().Images == 2 })
	if n := uprobeLinks(t, binB); n != 0 {
		t.Errorf("churn-b: %d uprobe_multi links left after its last process exited", n)
	}
	perImage := recipesAll / 3 // the three images have the same probes
	waitFor(t, "churn-b's recipes cleared", func() bool { return ourRecipes(t) == recipesAll-perImage })

	for _, c := range []int{a1.Process.Pid, a2.Process.Pid, p1.Process.Pid, p2.Process.Pid, p3.Process.Pid} {
		p, _ := os.FindProcess(c)
		p.Kill()
	}
	waitFor(t, "every image released", func() bool { st := d.Stats(); return st.Images == 0 && st.Traced == 0 })
	if n := ourRecipes(t); n != 0 {
		t.Errorf("%d recipes left once every process exited", n)
	}
	if n := bpfLinkFDs(t); n != baseLinks {
		t.Errorf("%d bpf_link fds once every process exited, %d before any was traced", n, baseLinks)
	}
}

// TestDaemonTwoSelectorsOneFile: two selectors take processes of one
// executable by their command lines, with other probes: two images, two
// sets of uprobes on the one file, each firing in every process of it.
// Each process gets the spans of its own selector's probes only: the
// kernel drops the hits of the other image's probes in it.
func TestDaemonTwoSelectorsOneFile(t *testing.T) {
	dir := t.TempDir()
	binA, _ := churnBinaries(t, dir)
	os.WriteFile(filepath.Join(dir, "other.yaml"), []byte("probes:\n  - symbol: main.Work\n    name: work-other\n"), 0o644)
	d, rec := churnDaemon(t, dir, fmt.Sprintf(`selectors:
  - exe: %[1]s
    cmdline: "--tag one"
    probes: probes.yaml
    builtin: [none]
  - exe: %[1]s
    cmdline: "--tag two"
    probes: other.yaml
    builtin: [none]
`, binA), agent.ImageConfig{})
	one := startProc(t, binA, "--tag", "one")
	waitFor(t, "selector one's process traced", func() bool { return rec.get(one.Process.Pid).work > 0 })
	two := startProc(t, binA, "--tag", "two")
	waitFor(t, "selector two's process traced", func() bool { return rec.get(two.Process.Pid).other["work-other"] > 0 })
	if st := d.Stats(); st.Images != 2 || st.Traced != 2 {
		t.Fatalf("two selectors on one file: %d images, %d traced; want 2 and 2", st.Images, st.Traced)
	}
	// The events read so far include the hits of selector one's probes in
	// the second process before it was decided (unattributed); from now
	// on the kernel sends none.
	before := d.Stats().Unattributed
	time.Sleep(500 * time.Millisecond) // about 25 more calls of Work in each
	if got := rec.get(one.Process.Pid); len(got.other) != 0 {
		t.Errorf("selector one's process got spans of selector two's probes: %v", got.other)
	}
	if got := rec.get(two.Process.Pid); got.work != 0 || len(got.boots) != 0 {
		t.Errorf("selector two's process got %d work and %d boot spans of selector one's probes", got.work, len(got.boots))
	}
	if st := d.Stats(); st.Unattributed != before || st.DecodeErrors != 0 {
		t.Errorf("events of the other selector's probes read once both processes were traced: %d, and %d decode errors; want none",
			st.Unattributed-before, st.DecodeErrors)
	}
}

// TestDaemonMaxProcesses: with room for one process in the kernel's
// maps, a second process of another executable waits, and is traced once
// the first exits and frees its counters' slot.
func TestDaemonMaxProcesses(t *testing.T) {
	dir := t.TempDir()
	binA, binB := churnBinaries(t, dir)
	d, rec := churnDaemon(t, dir, churnSelector(dir), agent.ImageConfig{MaxProcesses: 1})
	first := startProc(t, binA, "--tag", "first")
	waitFor(t, "the first process traced", func() bool { return rec.get(first.Process.Pid).work > 0 })
	second := startProc(t, binB, "--tag", "second")
	waitFor(t, "the second process waiting", func() bool { st := d.Stats(); return st.Waiting == 1 && st.Traced == 1 })
	if got := rec.get(second.Process.Pid); got.work != 0 {
		t.Fatalf("the second process traced beyond --max-processes 1: %+v", got)
	}
	stopProc(first)
	waitFor(t, "the second process traced once the first exited", func() bool { return rec.get(second.Process.Pid).work > 0 })
	if st := d.Stats(); st.Traced != 1 || st.Waiting != 0 {
		t.Errorf("after the first exited: %d traced, %d waiting; want 1 and 0", st.Traced, st.Waiting)
	}
}

// churnSelector takes every churn-* executable of dir with the churn
// probes.
func churnSelector(dir string) string {
	return fmt.Sprintf("selectors:\n  - exe: %s/churn-*\n    probes: probes.yaml\n    builtin: [none]\n", dir)
}

// churnDaemon runs, until the test ends, an in-process daemon with the
// selectors of config (probes.yaml in dir holds the churn probes) and the
// node's sizes of img, recording each process's spans.
func churnDaemon(t *testing.T, dir, config string, img agent.ImageConfig) (*daemon.Daemon, *pidSpans) {
	t.Helper()
	os.WriteFile(filepath.Join(dir, "probes.yaml"), []byte(churnProbes), 0o644)
	cfg, err := daemon.ParseConfig([]byte(config), dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &pidSpans{seen: map[int64]*pidSeen{}}
	img.PollInterval = 10 * time.Millisecond
	d := daemon.New(daemon.Options{Config: cfg, Self: os.Getpid(), Base: agent.Config{SessionConfig: agent.SessionConfig{Processor: rec}, ImageConfig: img}})
	runDaemon(t, d)
	return d, rec
}

// bpfLinkFDs counts this process's BPF link file descriptors.
func bpfLinkFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == "anon_inode:bpf_link" {
			n++
		}
	}
	return n
}

// ourRecipes counts the recipes set (not all zero) in the recipes maps
// this process holds: the node's.
func ourRecipes(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[ebpf.MapID]bool{}
	n := 0
	for _, e := range ents {
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		var id uint64
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "map_id:"); ok {
				id, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			}
		}
		if id == 0 || seen[ebpf.MapID(id)] {
			continue
		}
		seen[ebpf.MapID(id)] = true
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			continue // gone meanwhile
		}
		if mi, err := m.Info(); err == nil && mi.Name == "recipes" {
			var k uint32
			v := make([]byte, m.ValueSize())
			zero := make([]byte, m.ValueSize())
			it := m.Iterate()
			for it.Next(&k, &v) {
				if !bytes.Equal(v, zero) {
					n++
				}
			}
			if err := it.Err(); err != nil {
				t.Fatalf("read recipes: %v", err)
			}
		}
		m.Close()
	}
	return n
}

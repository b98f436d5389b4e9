package kerneltests

import (
	"context"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/daemon"
)

// pidSpans keeps, per traced process, the names of its spans, the tags its
// boot spans carried and its Go version: little enough that the test's own
// memory stays flat while processes come and go.
type pidSpans struct {
	mu   sync.Mutex
	seen map[int64]*pidSeen
}

type pidSeen struct {
	boots []string
	work  int
	other map[string]int // spans of other names, by name
	goVer string
	res   map[string]string // the resource, as strings
}

func (p *pidSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p *pidSpans) Shutdown(context.Context) error                  { return nil }
func (p *pidSpans) ForceFlush(context.Context) error                { return nil }
func (p *pidSpans) OnEnd(s sdktrace.ReadOnlySpan) {
	var pid int64
	var ver string
	for _, a := range s.Resource().Attributes() {
		switch a.Key {
		case "process.pid":
			pid = a.Value.AsInt64()
		case "process.runtime.version":
			ver = a.Value.AsString()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.seen[pid]
	if ps == nil {
		ps = &pidSeen{}
		p.seen[pid] = ps
	}
	ps.goVer = ver
	if ps.res == nil {
		ps.res = map[string]string{}
		for _, a := range s.Resource().Attributes() {
			ps.res[string(a.Key)] = a.Value.Emit()
		}
	}
	switch s.Name() {
	case "boot":
		ps.boots = append(ps.boots, fmt.Sprint(attrs(s)["tag"]))
	case "work":
		ps.work++
	default:
		if ps.other == nil {
			ps.other = map[string]int{}
		}
		ps.other[s.Name()]++
	}
}

func (p *pidSpans) get(pid int) pidSeen {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.seen[int64(pid)]; ps != nil {
		return pidSeen{boots: append([]string(nil), ps.boots...), work: ps.work, goVer: ps.goVer, res: ps.res, other: maps.Clone(ps.other)}
	}
	return pidSeen{}
}

// churnProbes makes spans of the churn fixture's calls: boot (with its
// tag) and work.
const churnProbes = `probes:
  - symbol: main.Boot
    name: boot
    attributes: [{key: tag, from: arg0, type: string}]
  - symbol: main.Work
    name: work
`

// churnBinaries builds the churn fixture twice under the test's own
// directory: churn-a with the newest Go, churn-b with the oldest.
func churnBinaries(t *testing.T, dir string) (a, b string) {
	t.Helper()
	src, _ := filepath.Abs("testdata/churn")
	a, b = filepath.Join(dir, "churn-a"), filepath.Join(dir, "churn-b")
	if err := goBuild(src, a, toolchains[len(toolchains)-1].toolchain, "."); err != nil {
		t.Fatal(err)
	}
	if err := goBuild(src, b, toolchains[0].toolchain, "."); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// proc is a started process, killed at the test's end.
type proc struct {
	cmd  *exec.Cmd
	bin  string
	tag  string
	want bool // a selector matches it
	// fromStart: another process of its executable was traced when it
	// started, so its uprobes were in place before its first instruction.
	fromStart bool
}

func startProc(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func stopProc(c *exec.Cmd) {
	c.Process.Kill()
	c.Wait()
}

// uprobeLinks counts the uprobe_multi links in the kernel attached to file.
func uprobeLinks(t *testing.T, file string) int {
	t.Helper()
	n := 0
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		info, err := l.Info()
		if err == nil && info.Type == link.UprobeMultiType {
			if um := info.UprobeMulti(); um != nil && um.File == file {
				n++
			}
		}
		l.Close()
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate links: %v", err)
	}
	return n
}

func countSessions(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// runDaemon runs d until the test ends, and waits until it is ready.
func runDaemon(t *testing.T, d *daemon.Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	waitFor(t, "daemon ready", d.Ready)
}

// TestDaemonChurn runs the daemon with one selector while 20 matching
// processes of two executables are started, killed and restarted over 30
// seconds, beside processes it must leave alone: one of the same
// executable without the selector's argument, one of a copy at a path the
// selector does not match, and non-Go ones. Every matching process is
// traced (those started while their executable was attached from their
// very first call), no other is, each exit ends its process's session, the
// probes of one executable are one set
// of links however many processes run it, no link is left once an
// executable's last process exits, and the agent's file descriptors and
// heap come back to where they were. Then churn-a is rebuilt with another
// Go release at the same path, and a process of it is traced with the new
// analysis.
func TestDaemonChurn(t *testing.T) {
	dir := t.TempDir()
	binA, binB := churnBinaries(t, dir)
	other := filepath.Join(dir, "other-churn")
	data, err := os.ReadFile(binA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "probes.yaml"), []byte(churnProbes), 0o644)
	cfg, err := daemon.ParseConfig([]byte(fmt.Sprintf(`selectors:
  - name: churn
    exe: %s/churn-*
    cmdline: "--traced"
    probes: probes.yaml
    builtin: [none]
`, dir)), dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &pidSpans{seen: map[int64]*pidSeen{}}
	var sessions sync.Map
	d := daemon.New(daemon.Options{Config: cfg, Self: os.Getpid(), MaxIdleBinaries: 1,
		Base: agent.Config{SessionConfig: agent.SessionConfig{Processor: rec}, ImageConfig: agent.ImageConfig{PollInterval: 10 * time.Millisecond}},
		OnSession: func(s *agent.Session, started bool) {
			if started {
				sessions.Store(s, true)
			} else {
				sessions.Delete(s)
			}
		}})
	runDaemon(t, d)
	idle := func() bool { st := d.Stats(); return st.Traced == 0 && st.Images == 0 }

	// Warm up: one process of churn-a traced and gone, so that the
	// baseline holds what the daemon keeps for good (one analysed
	// executable, at most, in its cache).
	warm := startProc(t, binA, "--traced", "--tag", "warm")
	waitFor(t, "warm-up process traced", func() bool { return rec.get(warm.Process.Pid).work > 0 })
	stopProc(warm)
	waitFor(t, "warm-up image released", idle)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap, baseFDs := ms.HeapAlloc, openFDs(t)

	// Left alone throughout: the same executable without --traced, a copy
	// elsewhere with it, and programs that are not Go.
	ignored := []*exec.Cmd{
		startProc(t, binA, "--tag", "not-selected"),
		startProc(t, other, "--traced", "--tag", "other-path"),
		startProc(t, "sleep", "60"),
		startProc(t, "sh", "-c", "while :; do sleep 0.2; done"),
	}

	var procs []*proc
	running := map[string][]*proc{}
	start := func(bin string, i int) {
		p := &proc{bin: bin, tag: fmt.Sprintf("p%d", i), want: true, fromStart: len(running[bin]) > 0}
		p.cmd = startProc(t, bin, "--traced", "--tag", p.tag)
		procs = append(procs, p)
		running[bin] = append(running[bin], p)
	}
	kill := func(bin string, j int) {
		p := running[bin][j]
		stopProc(p.cmd)
		running[bin] = append(running[bin][:j], running[bin][j+1:]...)
	}
	// The first of each executable, then, over 30 s, 18 more: every 1.5 s
	// one starts and, past three of an executable, one of its older ones
	// is killed; each kill makes room for a restart of its tag's slot.
	start(binA, 0)
	start(binB, 1)
	waitFor(t, "first processes traced", func() bool {
		return rec.get(procs[0].cmd.Process.Pid).work > 0 && rec.get(procs[1].cmd.Process.Pid).work > 0
	})
	if n := uprobeLinks(t, binA); n == 0 {
		t.Fatalf("no uprobe_multi link on %s while it runs traced", binA)
	}
	linksPerImage := uprobeLinks(t, binA)
	rnd := rand.New(rand.NewSource(1))
	maxShared := 0
	for i := 2; i < 20; i++ {
		time.Sleep(1500 * time.Millisecond)
		bin := binA
		if i%3 == 0 {
			bin = binB
		}
		start(bin, i)
		if len(running[bin]) > 3 {
			kill(bin, 1+rnd.Intn(len(running[bin])-2)) // never the newest, so one stays
		}
		if n := len(running[binA]); n > maxShared {
			maxShared = n
		}
		// Each exit ends its process's session, each start makes one.
		want := len(running[binA]) + len(running[binB])
		waitFor(t, fmt.Sprintf("one session for each of the %d running processes", want), func() bool {
			return countSessions(&sessions) == want && d.Stats().Traced == want
		})
		// However many processes run churn-a, it has one set of links.
		if n := uprobeLinks(t, binA); n != linksPerImage {
			t.Errorf("%d processes of churn-a: %d uprobe_multi links, want %d (one set, shared)", len(running[binA]), n, linksPerImage)
		}
	}
	if maxShared < 2 {
		t.Fatalf("never two processes of churn-a at once")
	}
	// Every churned process traced (waited for: the last ones started
	// just now), then each checked.
	deadline := time.Now().Add(time.Minute)
	for _, p := range procs {
		for rec.get(p.cmd.Process.Pid).work == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, p := range procs {
		got := rec.get(p.cmd.Process.Pid)
		if got.work == 0 {
			t.Errorf("%s %s (pid %d): not traced", filepath.Base(p.bin), p.tag, p.cmd.Process.Pid)
		}
		if p.fromStart && (len(got.boots) != 1 || got.boots[0] != p.tag) {
			t.Errorf("%s %s (pid %d): boot spans %q, want [%s]: not traced from its start", filepath.Base(p.bin), p.tag, p.cmd.Process.Pid, got.boots, p.tag)
		}
	}
	for _, c := range ignored {
		if got := rec.get(c.Process.Pid); got.work != 0 || len(got.boots) != 0 {
			t.Errorf("%v (pid %d) traced: %+v", c.Args, c.Process.Pid, got)
		}
	}
	st := d.Stats()
	t.Logf("daemon after churn: %+v; up to %d processes of churn-a shared %d links", st, maxShared, linksPerImage)
	if st.Decisions["traced"] != 21 { // the warm-up's and the 20
		t.Errorf("processes traced: %d, want 21", st.Decisions["traced"])
	}

	// Every traced process gone: its links go with its executable's last.
	for _, c := range ignored {
		stopProc(c)
	}
	for _, ps := range running {
		for _, p := range ps {
			stopProc(p.cmd)
		}
	}
	waitFor(t, "every image released", idle)
	for _, bin := range []string{binA, binB} {
		if n := uprobeLinks(t, bin); n != 0 {
			t.Errorf("%s: %d uprobe_multi links left after its last process exited", filepath.Base(bin), n)
		}
	}
	if n := countSessions(&sessions); n != 0 {
		t.Errorf("%d sessions still reported after their processes exited", n)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if fds := openFDs(t); fds != baseFDs {
		t.Errorf("open file descriptors: %d after churn, %d before: BPF objects or files leaked", fds, baseFDs)
	}
	t.Logf("heap: %d KiB before churn, %d KiB after", baseHeap>>10, ms.HeapAlloc>>10)
	if ms.HeapAlloc > baseHeap+baseHeap/2+(2<<20) {
		t.Errorf("heap grew from %d KiB to %d KiB over the churn", baseHeap>>10, ms.HeapAlloc>>10)
	}

	// The same path, rebuilt with another Go release: a new binary, whose
	// analysis must not be the old one's.
	src, _ := filepath.Abs("testdata/churn")
	if err := goBuild(src, binA, toolchains[0].toolchain, "."); err != nil {
		t.Fatal(err)
	}
	re := startProc(t, binA, "--traced", "--tag", "rebuilt")
	waitFor(t, "rebuilt churn-a traced", func() bool { return rec.get(re.Process.Pid).work > 0 })
	if v := rec.get(re.Process.Pid).goVer; !strings.HasPrefix(v, toolchains[0].release) {
		t.Errorf("rebuilt churn-a: process.runtime.version %q, want %s.x: the old analysis was reused", v, toolchains[0].release)
	}
	stopProc(re)
	waitFor(t, "rebuilt image released", idle)
}

// TestDaemonPortSelector: a selector by listening port takes a process
// once it listens (the fixture listens 300 ms after its start), and not
// one that listens on another port.
func TestDaemonPortSelector(t *testing.T) {
	dir := t.TempDir()
	binA, _ := churnBinaries(t, dir)
	os.WriteFile(filepath.Join(dir, "probes.yaml"), []byte("probes:\n  - symbol: main.Work\n    name: work\n"), 0o644)
	port := freePort(t)
	cfg, err := daemon.ParseConfig([]byte(fmt.Sprintf("selectors:\n  - port: %d\n    probes: probes.yaml\n    builtin: [none]\n", port)), dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &pidSpans{seen: map[int64]*pidSeen{}}
	d := daemon.New(daemon.Options{Config: cfg, Self: os.Getpid(), Base: agent.Config{SessionConfig: agent.SessionConfig{Processor: rec}, ImageConfig: agent.ImageConfig{PollInterval: 10 * time.Millisecond}}})
	runDaemon(t, d)
	yes := startProc(t, binA, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	no := startProc(t, binA, "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	waitFor(t, "listening process traced", func() bool { return rec.get(yes.Process.Pid).work > 0 })
	time.Sleep(time.Second) // a negative: no event says "will never be traced"
	if got := rec.get(no.Process.Pid); got.work != 0 {
		t.Errorf("a process listening on another port was traced: %+v", got)
	}
	// The other listener is still looked at, in case it opens the port.
	if st := d.Stats(); st.Waiting < 1 {
		t.Errorf("processes waiting for their port: %d, want the other listener among them", st.Waiting)
	}
}

package kerneltests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/internal/holds"
)

// opsAgent is a running tcagent command whose arguments the test gives
// whole, its log kept line by line.
type opsAgent struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	mu     sync.Mutex
	logs   []string
	exited chan struct{}
}

// startOps starts tcagent with args and waits until it logged want
// (a substring of one line of its log).
func startOps(t *testing.T, want string, args ...string) *opsAgent {
	t.Helper()
	a := &opsAgent{stdout: &lockedBuffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(tcagent(t), args...)
	a.cmd.Stdout = a.stdout
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := make(chan struct{})
	go func() {
		defer close(a.exited)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			a.mu.Lock()
			a.logs = append(a.logs, sc.Text())
			a.mu.Unlock()
			if strings.Contains(sc.Text(), want) {
				once.Do(func() { close(seen) })
			}
		}
		a.cmd.Wait()
	}()
	t.Cleanup(func() { a.cmd.Process.Kill(); <-a.exited })
	select {
	case <-seen:
	case <-a.exited:
		t.Fatalf("tcagent %v exited before logging %q:\n%s", args, want, a.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("tcagent %v did not log %q within 30s:\n%s", args, want, a.log())
	}
	return a
}

func (a *opsAgent) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.logs, "\n")
}

// field reads key=value from the first log line holding msg.
func (a *opsAgent) field(t *testing.T, msg, key string) string {
	t.Helper()
	for _, line := range strings.Split(a.log(), "\n") {
		if strings.Contains(line, msg) {
			if m := regexp.MustCompile(`\b` + regexp.QuoteMeta(key) + `=(\S+)`).FindStringSubmatch(line); m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("no %s in a log line with %q:\n%s", key, msg, a.log())
	return ""
}

// interrupt sends SIGINT and waits for the exit, which must be 0; it
// returns how long the agent took to exit.
func (a *opsAgent) interrupt(t *testing.T) time.Duration {
	t.Helper()
	t0 := time.Now()
	a.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-a.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("tcagent still running 60s after SIGINT:\n%s", a.log())
	}
	took := time.Since(t0)
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("tcagent exited %d after SIGINT, want 0:\n%s", code, a.log())
	}
	return took
}

// serverSpans counts the JSON lines of server spans of process pid.
func serverSpans(t *testing.T, jsonl string, pid int) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		if strings.Contains(line, `"kind":"server"`) && strings.Contains(line, fmt.Sprintf(`"process.pid":%d`, pid)) {
			n++
		}
	}
	return n
}

// get sends GET /hop to a hop, n times.
func (h *hop) get(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		resp, err := http.Get(h.url + "/hop")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// refused runs tcagent with args, which must exit 1 with one line on
// stderr holding every one of want, and nothing on stdout.
func refused(t *testing.T, args []string, want ...string) string {
	t.Helper()
	cmd := exec.Command(tcagent(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Not refused, it would trace on: stopped, and the test fails.
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !timer.Stop() {
		t.Fatalf("tcagent %v still ran after 30s: it was not refused; stderr:\n%s", args, stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("tcagent %v: %v, want exit status 1; stderr:\n%s", args, err, msg)
	}
	lines := strings.Split(msg, "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "tcagent: ") {
		t.Errorf("tcagent %v: last line %q is not the error", args, last)
	}
	for _, l := range lines[:len(lines)-1] {
		if strings.Contains(l, "level=ERROR") || strings.HasPrefix(l, "tcagent: ") {
			t.Errorf("tcagent %v: more than one error line: %q", args, l)
		}
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("tcagent %v: error %q does not say %q", args, last, w)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("tcagent %v wrote to stdout: %q", args, stdout.String())
	}
	return last
}

// lockFiles lists the marks of process pid in the default directory.
func lockFiles(t *testing.T, pid int) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(holds.DefaultDir, fmt.Sprintf("tcagent-pid-%d-*.lock", pid)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSecondAgentRefused: a second `tcagent attach` on a process another
// one traces exits 1 with one line naming the first (its pid, and that it
// runs attach), touching nothing: the first goes on tracing and every
// span is exported once. Its mark is gone once it exits.
func TestSecondAgentRefused(t *testing.T) {
	b := newestOf(t, "chain")
	h := startHop(t, b.path, "")
	first := startOps(t, "msg=attached", "attach", "--pid", strconv.Itoa(h.pid()), "--exporter", "jsonl", "--builtin", "http", "--metrics-addr", "")
	links := uprobeLinks(t, b.path)
	refused(t, []string{"attach", "--pid", strconv.Itoa(h.pid()), "--exporter", "jsonl", "--builtin", "http", "--metrics-addr", ""},
		fmt.Sprintf("pid %d is already traced by tcagent pid %d (tcagent attach)", h.pid(), first.cmd.Process.Pid), "--pid A,B,C")
	if n := uprobeLinks(t, b.path); n != links {
		t.Errorf("%d uprobe links on the target after the refusal, %d before: the second agent attached", n, links)
	}
	h.get(t, 3)
	time.Sleep(300 * time.Millisecond) // the reader polls
	first.interrupt(t)
	if n := serverSpans(t, first.stdout.String(), h.pid()); n != 3 {
		t.Errorf("%d server spans for 3 requests, want 3:\n%s", n, first.stdout.String())
	}
	if m := lockFiles(t, h.pid()); len(m) != 0 {
		t.Errorf("marks left after a clean exit: %v", m)
	}
}

// TestRepeatedPIDRefused: a pid given twice in one list is an error, and
// the process is not touched.
func TestRepeatedPIDRefused(t *testing.T) {
	b := newestOf(t, "chain")
	h := startHop(t, b.path, "")
	p := strconv.Itoa(h.pid())
	for _, args := range [][]string{{"--pid", p + "," + p}, {"--pid", p, "--pid", p}} {
		refused(t, append([]string{"attach", "--exporter", "jsonl", "--metrics-addr", ""}, args...), "--pid "+p+" given twice")
	}
	if n := uprobeLinks(t, b.path); n != 0 {
		t.Errorf("%d uprobe links on the target after the refusal", n)
	}
	if m := lockFiles(t, h.pid()); len(m) != 0 {
		t.Errorf("refused, yet marked: %v", m)
	}
}

// TestKilledAgentLetsGo: an agent killed with SIGKILL (no cleanup at all)
// does not keep the next one from tracing the process.
func TestKilledAgentLetsGo(t *testing.T) {
	b := newestOf(t, "chain")
	h := startHop(t, b.path, "")
	args := []string{"attach", "--pid", strconv.Itoa(h.pid()), "--exporter", "jsonl", "--builtin", "http", "--metrics-addr", ""}
	first := startOps(t, "msg=attached", args...)
	first.cmd.Process.Kill()
	<-first.exited
	waitFor(t, "the killed agent's uprobes gone", func() bool { return uprobeLinks(t, b.path) == 0 })
	next := startOps(t, "msg=attached", args...)
	h.get(t, 2)
	time.Sleep(300 * time.Millisecond)
	next.interrupt(t)
	if n := serverSpans(t, next.stdout.String(), h.pid()); n != 2 {
		t.Errorf("the next agent exported %d server spans for 2 requests", n)
	}
	// The file a killed agent leaves goes once its process is gone: the
	// next tcagent to start sweeps it.
	last := startOps(t, "msg=attached", args...)
	last.cmd.Process.Kill()
	<-last.exited
	if m := lockFiles(t, h.pid()); len(m) != 1 {
		t.Fatalf("marks after SIGKILL: %v, want the one left", m)
	}
	h.cmd.Process.Kill()
	h.cmd.Wait()
	refused(t, []string{"attach", "--pid", strconv.Itoa(h.pid()), "--metrics-addr", ""}, "no such process")
	if m := lockFiles(t, h.pid()); len(m) != 0 {
		t.Errorf("marks of a process gone not swept: %v", m)
	}
}

// TestDaemonAndAttachExclusive: `attach` on a process the daemon traces is
// refused, naming the daemon; and the daemon leaves a process `attach`
// traces to it, counted as held_by_other_agent, exporting none of its
// spans, until that agent detaches: then it takes the process over.
func TestDaemonAndAttachExclusive(t *testing.T) {
	b := newestOf(t, "chain")
	early := startHop(t, b.path, "") // traced by attach before the daemon starts
	att := startOps(t, "msg=attached", "attach", "--pid", strconv.Itoa(early.pid()), "--exporter", "jsonl", "--builtin", "http", "--metrics-addr", "")
	cfg := writeFile(t, "daemon.yaml", fmt.Sprintf("selectors:\n  - exe: %s\n    builtin: [http]\n", b.path))
	d := startDaemon(t, cfg, nil)
	if !d.waitReady(t) {
		t.Fatalf("daemon exited:\n%s", d.log())
	}
	if n := scrape(t, d.metrics, "tcagent_daemon_processes_total", `decision="held_by_other_agent"`); n != 1 {
		t.Errorf("held_by_other_agent = %v, want 1", n)
	}
	if !strings.Contains(d.log(), fmt.Sprintf("holder=\"tcagent pid %d (tcagent attach)\"", att.cmd.Process.Pid)) {
		t.Errorf("the daemon's log does not name the holder:\n%s", d.log())
	}
	late := startHop(t, b.path, "") // the daemon's
	waitFor(t, "the daemon tracing the new process", func() bool { return scrape(t, d.metrics, "tcagent_daemon_processes_traced") == 1 })
	refused(t, []string{"attach", "--pid", strconv.Itoa(late.pid()), "--exporter", "jsonl", "--builtin", "http", "--metrics-addr", ""},
		fmt.Sprintf("pid %d is already traced by tcagent pid %d (tcagent daemon)", late.pid(), d.cmd.Process.Pid))

	early.get(t, 2)
	late.get(t, 1)
	time.Sleep(300 * time.Millisecond)
	att.interrupt(t)
	if n := serverSpans(t, att.stdout.String(), early.pid()); n != 2 {
		t.Errorf("attach exported %d server spans of its process, want 2", n)
	}
	waitFor(t, "the daemon's span of its process", func() bool { return serverSpans(t, d.stdout.String(), late.pid()) == 1 })
	// attach let go: the daemon takes the process over (looked at again
	// within its backoff of at most 8 s).
	deadline := time.Now().Add(30 * time.Second)
	for scrape(t, d.metrics, "tcagent_daemon_processes_traced") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not take over the process attach let go:\n%s", d.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	early.get(t, 1)
	waitFor(t, "the daemon's span of the process taken over", func() bool { return serverSpans(t, d.stdout.String(), early.pid()) == 1 })
	d.stop(t)
	if n := serverSpans(t, d.stdout.String(), early.pid()); n != 1 {
		t.Errorf("the daemon exported %d spans of the process attach held, want only the 1 after it let go", n)
	}
}

// hungListener accepts connections and never answers: a Collector that
// hangs.
func hungListener(t *testing.T) (addr string, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read
			mu.Unlock()
		}
	}()
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(conns) }
}

// TestShutdownHungCollector: against a Collector that accepts and never
// answers, over gRPC and over HTTP, the agent detaches its uprobes first,
// exits 0 by its --shutdown-timeout (plus a generous margin), and says how
// many spans it gave up: all of them, none exported. Nothing of it stays
// in the kernel.
func TestShutdownHungCollector(t *testing.T) {
	const timeout = 2 * time.Second
	const margin = 3 * time.Second
	b := newestOf(t, "chain")
	for _, proto := range []string{"grpc", "http/protobuf"} {
		t.Run(strings.ReplaceAll(proto, "/", "-"), func(t *testing.T) {
			addr, accepted := hungListener(t)
			h := startHop(t, b.path, "")
			metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			a := startOps(t, "msg=attached", "attach", "--pid", strconv.Itoa(h.pid()), "--exporter", "otlp", "--otlp-protocol", proto,
				"--otlp-endpoint", "http://"+addr, "--builtin", "http", "--metrics-addr", metrics, "--shutdown-timeout", timeout.String())
			if uprobeLinks(t, b.path) == 0 {
				t.Fatal("no uprobe link while attached")
			}
			h.get(t, 2)
			waitFor(t, "two spans ended", func() bool { return scrape(t, metrics, "tcagent_spans_ended_total") == 2 })
			waitFor(t, "the exporter connected to the hung Collector", func() bool { return accepted() > 0 })
			took := a.interrupt(t)
			if took > timeout+margin {
				t.Errorf("exited %v after SIGINT, want by %v (--shutdown-timeout %v)", took, timeout+margin, timeout)
			}
			if got := a.field(t, "given up", "abandoned_at_shutdown"); got != "2" {
				t.Errorf("abandoned_at_shutdown=%s, want 2", got)
			}
			if got := a.field(t, "given up", "exported"); got != "0" {
				t.Errorf("exported=%s to a Collector that never answers", got)
			}
			log := a.log()
			if d, g := strings.Index(log, "msg=detached"), strings.Index(log, "given up"); d < 0 || d > g {
				t.Errorf("the uprobes were not detached before the export was given up:\n%s", log)
			}
			waitFor(t, "no uprobe link left", func() bool { return uprobeLinks(t, b.path) == 0 })
			t.Logf("%s: exited %v after SIGINT", proto, took.Round(time.Millisecond))
			h.get(t, 1) // the program is unharmed
		})
	}
}

// TestMetricsDefaultPortTaken: with the default metrics address taken (by
// a listener of the test's own, standing for another agent), the agent
// says so once, serves its metrics on another port, and traces; an
// explicit --metrics-addr that is taken is fatal, in one line.
func TestMetricsDefaultPortTaken(t *testing.T) {
	const def = "127.0.0.1:9464"
	if ln, err := net.Listen("tcp", def); err == nil {
		t.Cleanup(func() { ln.Close() })
	} else {
		t.Logf("%s already taken: %v", def, err) // taken all the same
	}
	b := newestOf(t, "chain")
	h := startHop(t, b.path, "")
	a := startOps(t, "msg=attached", "attach", "--pid", strconv.Itoa(h.pid()), "--exporter", "jsonl", "--builtin", "http")
	if n := strings.Count(a.log(), "default metrics address unavailable"); n != 1 {
		t.Errorf("%d warnings about the taken port, want 1:\n%s", n, a.log())
	}
	got := a.field(t, "msg=attached", "metrics")
	if got == def || got == "" {
		t.Fatalf("attached with metrics=%q: want another port", got)
	}
	if w := a.field(t, "default metrics address unavailable", "metrics"); w != got {
		t.Errorf("the warning says metrics=%s, the attached line %s", w, got)
	}
	h.get(t, 2)
	waitFor(t, "spans counted at the other port", func() bool { return scrape(t, got, "tcagent_spans_ended_total") == 2 })
	time.Sleep(300 * time.Millisecond)
	a.interrupt(t)
	if n := serverSpans(t, a.stdout.String(), h.pid()); n != 2 {
		t.Errorf("%d server spans for 2 requests", n)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	refused(t, []string{"attach", "--pid", strconv.Itoa(h.pid()), "--exporter", "jsonl", "--metrics-addr", taken.Addr().String()},
		"--metrics-addr "+taken.Addr().String(), "address already in use")
	if n := uprobeLinks(t, b.path); n != 0 {
		t.Errorf("%d uprobe links after the refusal", n)
	}
}

// TestSecondPropagateAgentRefused: with one agent propagating on a
// cgroup, a second `--propagate` agent for another process of it exits 1
// telling the user to trace both with one agent; the first one's requests
// still carry their traceparent.
func TestSecondPropagateAgentRefused(t *testing.T) {
	b := newestOf(t, "chain")
	c := startHop(t, b.path, "")
	bh := startHop(t, b.path, c.url)
	cgB, err := bpf.CgroupOf(bh.pid())
	if err != nil {
		t.Fatal(err)
	}
	if cgC, _ := bpf.CgroupOf(c.pid()); cgC != cgB {
		t.Fatalf("the two services are in cgroups %s and %s: the test wants one", cgB, cgC)
	}
	first := startCLI(t, []int{bh.pid()}, "--propagate")
	links := uprobeLinks(t, b.path)
	refused(t, []string{"attach", "--pid", strconv.Itoa(c.pid()), "--propagate", "--exporter", "jsonl", "--builtin", "http", "--metrics-addr", ""},
		fmt.Sprintf("--propagate: tcagent pid %d (tcagent attach) already propagates on the sockets of cgroup", first.cmd.Process.Pid),
		"--pid A,B,C", "daemon")
	if n := uprobeLinks(t, b.path); n != links {
		t.Errorf("%d uprobe links on the executable after the refusal, %d before", n, links)
	}
	bh.get(t, 2)
	if n := first.settled(t, 2, "tcagent_propagation_socket_total", `outcome="injected"`); n != 2 {
		t.Errorf("the first agent injected %v of 2 requests after the refusal", n)
	}
	first.stop(t)
	// Once it is gone, another may propagate there.
	next := startCLI(t, []int{c.pid()}, "--propagate")
	next.stop(t)
}

// TestCgroupHoldsOverlap: --propagate's marks conflict exactly when one
// cgroup subtree holds the other: siblings coexist, a parent and its
// child do not, in either order.
func TestCgroupHoldsOverlap(t *testing.T) {
	root, err := bpf.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Join(root, fmt.Sprintf("tcagent-ops-%d", os.Getpid()))
	a, b := filepath.Join(parent, "a"), filepath.Join(parent, "b")
	for _, d := range []string{parent, a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.Remove(a); os.Remove(b); os.Remove(parent) })
	dir := t.TempDir()
	hold := func(cg string) (func(), error) { return bpf.HoldCgroup(dir, cg) }
	ra, err := hold(a)
	if err != nil {
		t.Fatalf("hold %s: %v", a, err)
	}
	rb, err := hold(b)
	if err != nil {
		t.Fatalf("sibling %s refused: %v", b, err)
	}
	for _, cg := range []string{parent, root, a} {
		if _, err := hold(cg); err == nil || !strings.Contains(err.Error(), "already propagates") {
			t.Errorf("hold %s beside a held child: %v, want refused", cg, err)
		}
	}
	ra()
	rb()
	rp, err := hold(parent)
	if err != nil {
		t.Fatalf("parent after its children let go: %v", err)
	}
	_, err = hold(a)
	if err == nil || !strings.Contains(err.Error(), "above this one") {
		t.Errorf("child under a held parent: %v, want refused naming the parent", err)
	}
	rp()
	if _, err := hold(a); err != nil {
		t.Errorf("child after the parent let go: %v", err)
	}
}

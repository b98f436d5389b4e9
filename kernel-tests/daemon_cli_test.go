package kerneltests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemonCLI is a running `tcagent daemon`.
type daemonCLI struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	stdout  bytes.Buffer
	logs    []string
	ready   chan struct{}
	exited  chan struct{}
	metrics string
}

func (d *daemonCLI) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stdout.Write(p)
}

// spans returns the JSON lines written so far.
func (d *daemonCLI) spans(t *testing.T) []map[string]any {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(d.stdout.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// spansOf counts the spans named name of process pid.
func (d *daemonCLI) spansOf(t *testing.T, pid int, name string) int {
	n := 0
	for _, s := range d.spans(t) {
		if s["name"] == name && s["resource"].(map[string]any)["process.pid"] == float64(pid) {
			n++
		}
	}
	return n
}

func (d *daemonCLI) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.logs, "\n")
}

// startDaemon runs `tcagent daemon --config cfg` with args; caps, when not
// nil, runs it as nobody with exactly those capabilities (setpriv).
func startDaemon(t *testing.T, cfg string, caps []string, args ...string) *daemonCLI {
	t.Helper()
	d := &daemonCLI{ready: make(chan struct{}), exited: make(chan struct{})}
	d.metrics = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	argv := append([]string{tcagent(t), "daemon", "--config", cfg, "--exporter", "jsonl", "--metrics-addr", d.metrics}, args...)
	if caps != nil {
		set := "-all"
		for _, c := range caps {
			set += ",+" + c
		}
		argv = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set}, argv...)
	}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout = d
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cmd.Process.Kill(); <-d.exited })
	go func() {
		defer close(d.exited)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			d.mu.Lock()
			d.logs = append(d.logs, sc.Text())
			d.mu.Unlock()
			if strings.Contains(sc.Text(), "daemon ready") {
				once.Do(func() { close(d.ready) })
			}
		}
		d.cmd.Wait()
	}()
	return d
}

// waitReady waits for the daemon's ready line; false if it exited first.
func (d *daemonCLI) waitReady(t *testing.T) bool {
	t.Helper()
	select {
	case <-d.ready:
		return true
	case <-d.exited:
		return false
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon not ready within 20s:\n%s", d.log())
	}
	return false
}

// stop ends the daemon with SIGTERM and wants exit status 0.
func (d *daemonCLI) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within 15s of SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("daemon exited %d after SIGTERM, want 0:\n%s", code, d.log())
	}
}

// daemonDir makes a directory anyone may read, holding the churn fixtures
// and a configuration selecting churn-* with --traced.
func daemonDir(t *testing.T) (dir, cfg, binA string) {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "daemon-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	binA, _ = churnBinaries(t, dir)
	os.WriteFile(filepath.Join(dir, "probes.yaml"), []byte(churnProbes), 0o644)
	cfg = filepath.Join(dir, "daemon.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("selectors:\n  - name: churn\n    exe: %s/churn-*\n    cmdline: --traced\n    probes: probes.yaml\n    builtin: [none]\n", dir)), 0o644)
	return dir, cfg, binA
}

// TestCLIDaemon runs `tcagent daemon` as a user would: a process already
// running traced, readiness on
// /readyz, spans as JSON lines with each process's resource, the daemon's
// metrics, a clean exit on SIGTERM; and a one-line error for a bad
// configuration.
func TestCLIDaemon(t *testing.T) {
	dir, cfg, binA := daemonDir(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"daemon"}, "tcagent: daemon: --config is required"},
		{[]string{"daemon", "--config", filepath.Join(dir, "missing.yaml")}, "tcagent: daemon config: open "},
		{[]string{"daemon", "--config", writeFile(t, "bad.yaml", "selectors:\n  - exe: /x\n    colour: red\n")}, `bad.yaml line 3: unknown key "colour" in selector 1`},
		{[]string{"daemon", "--config", cfg, "--metrics-addr", "", "--ring-buffer-size", "3MiB"}, "tcagent: --ring-buffer-size 3MiB: a power of two"},
	} {
		out, err := exec.Command(tcagent(t), c.args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%v: %v, want exit status 1", c.args, err)
		}
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%v: said %q, want one line with %q", c.args, out, c.want)
		}
	}

	// Running before the daemon: found by its look at /proc. The kernel
	// maps are sized by the flags: with a 1 MiB ring buffer and small
	// maps, less than the default 8 MiB ring buffer alone is locked.
	early := startProc(t, binA, "--traced", "--tag", "early")
	d := startDaemon(t, cfg, nil, "--ring-buffer-size", "1MiB", "--map-entries", "4096")
	if !d.waitReady(t) {
		t.Fatalf("daemon exited:\n%s", d.log())
	}
	waitFor(t, "the process running before the daemon traced", func() bool { return d.spansOf(t, early.Process.Pid, "work") > 0 })
	stopProc(early)
	resp, err := http.Get("http://" + d.metrics + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	first := startProc(t, binA, "--traced", "--tag", "first")
	waitFor(t, "the first process traced", func() bool { return d.spansOf(t, first.Process.Pid, "work") > 0 })
	second := startProc(t, binA, "--traced", "--tag", "second")
	waitFor(t, "the second process's boot span", func() bool { return d.spansOf(t, second.Process.Pid, "boot") == 1 })
	if n := scrape(t, d.metrics, "tcagent_daemon_processes_traced"); n != 2 {
		t.Errorf("tcagent_daemon_processes_traced %v, want 2", n)
	}
	if n := scrape(t, d.metrics, "tcagent_daemon_executables_attached"); n != 1 {
		t.Errorf("tcagent_daemon_executables_attached %v, want 1: two processes, one executable", n)
	}
	if n := scrape(t, d.metrics, "tcagent_bpf_memory_bytes"); n < 1<<20 || n >= 8<<20 {
		t.Errorf("tcagent_bpf_memory_bytes %v, want the 1 MiB ring buffer and small maps: from 1 to 8 MiB", n)
	}
	waitFor(t, "the second process's events counted", func() bool {
		return scrape(t, d.metrics, "tcagent_events_read_total", fmt.Sprintf(`pid="%d"`, second.Process.Pid)) > 0
	})
	for _, s := range d.spans(t) {
		res := s["resource"].(map[string]any)
		if res["service.name"] != "churn-a" || res["process.executable.path"] != binA {
			t.Errorf("resource %v", res)
			break
		}
	}
	stopProc(first)
	stopProc(second)
	waitFor(t, "both processes let go", func() bool {
		return scrape(t, d.metrics, "tcagent_daemon_processes_traced") == 0 && scrape(t, d.metrics, "tcagent_daemon_executables_attached") == 0
	})
	d.stop(t)
}

// TestDaemonCapabilities runs the daemon as nobody with exactly the
// capabilities the DaemonSet grants (deploy/kubernetes/daemonset.yaml:
// the deploy tests hold it to this list), then with each one missing: the
// full set traces a root process whose executable only root may read, and
// without any one of them nothing is traced, with an error or a warning
// saying what is missing.
func TestDaemonCapabilities(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv is not installed (apt-get install util-linux): scripts/test-setup.sh installs it; it runs the agent with chosen capabilities")
	}
	_, cfg, binA := daemonDir(t)
	os.Chmod(binA, 0o700) // only its owner (root) may read it
	caps := []string{"bpf", "perfmon", "sys_ptrace", "dac_read_search"}
	for i := -1; i < len(caps); i++ {
		set := caps
		name := "all four"
		if i >= 0 {
			set = append(append([]string{}, caps[:i]...), caps[i+1:]...)
			name = "without " + caps[i]
		}
		t.Run(name, func(t *testing.T) {
			d := startDaemon(t, cfg, set)
			ready := d.waitReady(t)
			var noAccess float64
			if ready {
				noAccess = scrape(t, d.metrics, "tcagent_daemon_processes_total", `decision="no_access"`)
			}
			p := startProc(t, binA, "--traced", "--tag", "x")
			if i < 0 {
				if !ready {
					t.Fatalf("daemon exited:\n%s", d.log())
				}
				waitFor(t, "the process traced", func() bool { return d.spansOf(t, p.Process.Pid, "work") > 0 })
				d.stop(t)
				return
			}
			if ready {
				// It runs, but may not look at the process: counted (the
				// event waited for), and said once.
				deadline := time.Now().Add(time.Minute)
				for scrape(t, d.metrics, "tcagent_daemon_processes_total", `decision="no_access"`) <= noAccess && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				if n := scrape(t, d.metrics, "tcagent_daemon_processes_total", `decision="no_access"`); n <= noAccess {
					t.Errorf("without %s: no_access stayed %v: the process was skipped silently", caps[i], n)
				}
				if n := d.spansOf(t, p.Process.Pid, "work"); n != 0 {
					t.Errorf("traced %d calls without %s", n, caps[i])
				}
				if !strings.Contains(d.log(), "level=WARN msg=\"cannot read a process's executable") {
					t.Errorf("without %s: no warning:\n%s", caps[i], d.log())
				}
				d.stop(t)
			} else if !strings.Contains(d.log(), "tcagent: ") {
				t.Errorf("without %s: exited saying nothing:\n%s", caps[i], d.log())
			}
			log := d.log()
			t.Logf("without %s: %s", caps[i], lastLine(log))
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "WARN") || strings.HasPrefix(lines[i], "tcagent: ") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}

// TestDaemonPropagate: three services of one executable, found by the
// daemon and traced through one shared set of uprobes, with --propagate:
// each request is one trace across them, the header added at the socket —
// the kernel keeps each process's goroutines apart though their ids
// collide.
func TestDaemonPropagate(t *testing.T) {
	builds := []build{newestOf(t, "chain")}
	for _, b := range fixturesOf(t, "chain") {
		if b.pie {
			builds = append(builds, b)
		}
	}
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) { testDaemonPropagate(t, b) })
	}
}

// testDaemonPropagate: with a position-independent build, the three
// processes, which ASLR maps apart, share one set of uprobes too, and the
// kernel tells their connections' types by each one's load bias.
func testDaemonPropagate(t *testing.T, b build) {
	cfg := writeFile(t, "daemon.yaml", fmt.Sprintf("selectors:\n  - exe: %s\n    builtin: [http]\n", b.path))
	d := startDaemon(t, cfg, nil, "--propagate")
	if !d.waitReady(t) {
		t.Fatalf("daemon exited:\n%s", d.log())
	}
	c := startHop(t, b.path, "")
	bh := startHop(t, b.path, c.url)
	a := startHop(t, b.path, bh.url)
	waitFor(t, "three services traced", func() bool { return scrape(t, d.metrics, "tcagent_daemon_processes_traced") == 3 })
	if n := scrape(t, d.metrics, "tcagent_daemon_executables_attached"); n != 1 {
		t.Errorf("%v executables attached, want 1: the three share one", n)
	}
	for i := 0; i < 2; i++ {
		resp, err := http.Get(a.url + "/hop")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	waitFor(t, "four requests injected", func() bool {
		return scrape(t, d.metrics, "tcagent_propagation_socket_total", `outcome="injected"`) == 4
	})
	d.stop(t) // detaches and drains the ring buffer
	spans := map[string]map[string]any{}
	for _, s := range d.spans(t) {
		spans[s["span_id"].(string)] = s
	}
	checkChain(t, spans, a, bh, c)
}

// TestPropagateCapability runs `tcagent daemon --propagate` as nobody with
// the four capabilities the DaemonSet grants plus CAP_NET_ADMIN, then
// without it: with it the socket programs load and a request between two
// traced services carries the header; without it the daemon refuses to
// start, with one line naming CAP_NET_ADMIN and status 1.
func TestPropagateCapability(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv is not installed (apt-get install util-linux): scripts/test-setup.sh installs it; it runs the agent with chosen capabilities")
	}
	b := newestOf(t, "chain")
	cfg := filepath.Join(workDir, "propagate-caps.yaml") // readable by nobody
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("selectors:\n  - exe: %s\n    builtin: [http]\n", b.path)), 0o644); err != nil {
		t.Fatal(err)
	}
	caps := []string{"bpf", "perfmon", "sys_ptrace", "dac_read_search"}
	t.Run("with net_admin", func(t *testing.T) {
		d := startDaemon(t, cfg, append(append([]string{}, caps...), "net_admin"), "--propagate")
		if !d.waitReady(t) {
			t.Fatalf("daemon exited:\n%s", d.log())
		}
		c := startHop(t, b.path, "")
		a := startHop(t, b.path, c.url)
		waitFor(t, "two services traced", func() bool { return scrape(t, d.metrics, "tcagent_daemon_processes_traced") == 2 })
		resp, err := http.Get(a.url + "/hop")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		waitFor(t, "the request between them injected", func() bool {
			return scrape(t, d.metrics, "tcagent_propagation_socket_total", `outcome="injected"`) == 1
		})
		d.stop(t)
	})
	t.Run("without net_admin", func(t *testing.T) {
		d := startDaemon(t, cfg, caps, "--propagate")
		if d.waitReady(t) {
			t.Fatalf("daemon started without CAP_NET_ADMIN:\n%s", d.log())
		}
		log := strings.TrimSpace(d.log())
		if code := d.cmd.ProcessState.ExitCode(); code != 1 || strings.Count(log, "\n") != 0 || !strings.HasPrefix(log, "tcagent: ") ||
			!strings.Contains(log, "CAP_NET_ADMIN") {
			t.Errorf("exit %d, stderr:\n%s\nwant status 1 and one line naming CAP_NET_ADMIN", code, log)
		}
	})
}

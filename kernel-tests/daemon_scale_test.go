package kerneltests

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	iproc "github.com/tcagent/tcagent/internal/proc"
)

// scaleExe is one build of the scale fixture: a distinct executable.
type scaleExe struct {
	path string
	pie  bool
}

// scaleExecutables builds (once) the scale fixture into nonPIE distinct
// executables by the local Go and pie stripped PIE ones by the newest Go
// (as distributions build them), each with its own id (-X main.id), so
// its own build id, under workDir/scale: in parallel, one link each.
func scaleExecutables(t *testing.T, nonPIE, pie int) []scaleExe {
	t.Helper()
	buildsMu.Lock()
	defer buildsMu.Unlock()
	dir := filepath.Join(workDir, "scale")
	var exes []scaleExe
	for i := 0; i < nonPIE+pie; i++ {
		e := scaleExe{path: filepath.Join(dir, fmt.Sprintf("scale-n%02d", i)), pie: i >= nonPIE}
		if e.pie {
			e.path = filepath.Join(dir, fmt.Sprintf("scale-p%02d", i-nonPIE))
		}
		exes = append(exes, e)
	}
	key := fmt.Sprintf("scale %d %d", nonPIE, pie)
	if _, done := builds[key]; done {
		return exes
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, _ := filepath.Abs("testdata/scale")
	errs := make([]error, len(exes))
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for i, e := range exes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			id := "-X=main.id=" + filepath.Base(e.path)
			if e.pie {
				errs[i] = goBuild(src, e.path, toolchains[len(toolchains)-1].toolchain, "-buildmode=pie", "-ldflags=-s -w "+id, ".")
			} else {
				errs[i] = goBuild(src, e.path, "local", "-ldflags="+id, ".")
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	builds[key] = nil
	return exes
}

// scaleProc is one started process of the scale test.
type scaleProc struct {
	exe scaleExe
	tg  *target
	url string
}

// TestDaemonScale runs `tcagent daemon` over 30 distinct executables of
// one small net/http server: 20 not PIE with one process each, 10 stripped
// PIE ones (newest Go) with three processes each. Every process is traced
// from its first request: the first process of an executable gets it once
// the daemon said it attached; the others of a PIE executable get theirs
// at once, as they start after their executable's probes are in place. The
// processes of one PIE executable share its uprobe links, whatever address
// ASLR gave each: the daemon's links grow per executable, not per process.
// Once every process exited, every link, map and program of theirs is
// gone: the daemon holds what it held before the first.
func TestDaemonScale(t *testing.T) {
	const nonPIE, pie, perPIE = 20, 10, 3
	exes := scaleExecutables(t, nonPIE, pie)
	cfg := writeFile(t, "daemon.yaml", fmt.Sprintf("selectors:\n  - exe: %s/scale-*\n    builtin: [http]\n", filepath.Dir(exes[0].path)))
	d := startDaemon(t, cfg, nil)
	if !d.waitReady(t) {
		t.Fatalf("daemon exited:\n%s", d.log())
	}
	dpid := d.cmd.Process.Pid
	base := bpfOf(t, dpid)

	var procs []*scaleProc
	start := func(e scaleExe) *scaleProc {
		tg, line := startProcess(t, e.path, nil, nil)
		url, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
		if !ok {
			t.Fatalf("%s did not start: %q", e.path, line)
		}
		p := &scaleProc{exe: e, tg: tg, url: url}
		procs = append(procs, p)
		return p
	}
	// How many uprobe_multi links the daemon holds on each executable
	// once its first process is attached, and once its last is.
	linksFirst, linksAll := map[string]int{}, map[string]int{}
	for _, e := range exes {
		first := start(e)
		waitAttached(t, d, first)
		getOK(t, first.url+"/first")
		linksFirst[e.path] = bpfOf(t, dpid).UprobeMulti[e.path]
		if e.pie {
			var more []*scaleProc
			for i := 1; i < perPIE; i++ {
				p := start(e)
				getOK(t, p.url+"/first")
				more = append(more, p)
			}
			for _, p := range more {
				waitAttached(t, d, p)
			}
		}
		linksAll[e.path] = bpfOf(t, dpid).UprobeMulti[e.path]
	}

	// One server span per process, of its first request, with its
	// resource. A process whose first request went untraced is named.
	spanOf := func() map[int][]map[string]any {
		by := map[int][]map[string]any{}
		for _, s := range d.spans(t) {
			pid := int(s["resource"].(map[string]any)["process.pid"].(float64))
			by[pid] = append(by[pid], s)
		}
		return by
	}
	deadline := time.Now().Add(time.Minute)
	for {
		by := spanOf()
		var missing []string
		for _, p := range procs {
			if len(by[p.tg.pid()]) == 0 {
				missing = append(missing, fmt.Sprintf("%s pid %d", filepath.Base(p.exe.path), p.tg.pid()))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d processes had their first request untraced: %s", len(missing), len(procs), strings.Join(missing, ", "))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	by := spanOf()
	for _, p := range procs {
		spans := by[p.tg.pid()]
		if len(spans) > 1 {
			t.Errorf("%s pid %d: %d spans, want 1 (one request)", p.exe.path, p.tg.pid(), len(spans))
		}
		for _, s := range spans {
			res, at := s["resource"].(map[string]any), s["attributes"].(map[string]any)
			if s["name"] != "GET" || s["kind"] != "server" || s["parent_span_id"] != "" || s["status"].(map[string]any)["code"] != "unset" ||
				at["url.path"] != "/first" || at["http.response.status_code"] != float64(200) ||
				res["service.name"] != filepath.Base(p.exe.path) || res["process.executable.path"] != p.exe.path {
				t.Errorf("%s pid %d: span %v", p.exe.path, p.tg.pid(), s)
			}
		}
	}

	// Links per executable, not per process.
	all := bpfOf(t, dpid)
	total := 0
	for _, e := range exes {
		n := all.UprobeMulti[e.path]
		total += n
		if linksFirst[e.path] == 0 || n != linksFirst[e.path] || linksAll[e.path] != linksFirst[e.path] {
			what := "one process"
			if e.pie {
				what = fmt.Sprintf("%d PIE processes: they must share one set (a per-process load bias), not get one set each", perPIE)
			}
			t.Errorf("%s: %d uprobe_multi links after its first process, %d after all, %d now (%s)", filepath.Base(e.path), linksFirst[e.path], linksAll[e.path], n, what)
		}
	}
	if got := all.Links["uprobe_multi"] - base.Links["uprobe_multi"]; got != total {
		t.Errorf("the daemon holds %d uprobe_multi links more than before, want %d: those on the executables (%v)", got, total, all.UprobeMulti)
	}
	if n := scrape(t, d.metrics, "tcagent_daemon_processes_traced"); n != float64(len(procs)) {
		t.Errorf("tcagent_daemon_processes_traced %v, want %d", n, len(procs))
	}
	if n := scrape(t, d.metrics, "tcagent_daemon_executables_attached"); n != float64(len(exes)) {
		t.Errorf("tcagent_daemon_executables_attached %v, want %d: one per executable, PIE ones too", n, len(exes))
	}
	t.Logf("%d executables, %d processes: the daemon holds %d maps (%.1f MiB locked, ring buffers %.1f MiB), %d programs, %d links; VmRSS %s",
		len(exes), len(procs), all.Maps, mib(all.MapBytes), mib(all.RingBufferBytes), all.Programs, all.LinkCount(), vmRSS(dpid))

	// After the last exit: back to what the daemon held before the first.
	for _, p := range procs {
		stopProc(p.tg.cmd)
	}
	waitFor(t, "every process let go", func() bool {
		return scrape(t, d.metrics, "tcagent_daemon_processes_traced") == 0 && scrape(t, d.metrics, "tcagent_daemon_executables_attached") == 0
	})
	var now iproc.BPFObjects
	deadline = time.Now().Add(time.Minute)
	for now = bpfOf(t, dpid); !sameBPF(now, base) && time.Now().Before(deadline); now = bpfOf(t, dpid) {
		time.Sleep(100 * time.Millisecond)
	}
	if !sameBPF(now, base) {
		t.Errorf("after the last exit the daemon holds %d maps (%d bytes), %d programs, links %v; before the first: %d maps (%d bytes), %d programs, links %v",
			now.Maps, now.MapBytes, now.Programs, now.Links, base.Maps, base.MapBytes, base.Programs, base.Links)
	}
	d.stop(t)
}

// waitAttached waits for the daemon's line saying it attached to p.
func waitAttached(t *testing.T, d *daemonCLI, p *scaleProc) {
	t.Helper()
	line := fmt.Sprintf("msg=attached pid=%d ", p.tg.pid())
	waitFor(t, fmt.Sprintf("the daemon attached to %s pid %d", filepath.Base(p.exe.path), p.tg.pid()), func() bool { return strings.Contains(d.log(), line) })
}

// getOK sends GET url and wants 200.
func getOK(t *testing.T, url string) {
	t.Helper()
	if code := get(t, url); code != 200 {
		t.Fatalf("GET %s: status %d", url, code)
	}
}

func bpfOf(t *testing.T, pid int) iproc.BPFObjects {
	t.Helper()
	o, err := iproc.BPF(pid)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// sameBPF: as many maps, programs and links of each type, locking as much.
func sameBPF(a, b iproc.BPFObjects) bool {
	if a.Maps != b.Maps || a.MapBytes != b.MapBytes || a.Programs != b.Programs || a.ProgramBytes != b.ProgramBytes || len(a.Links) != len(b.Links) {
		return false
	}
	for k, v := range a.Links {
		if b.Links[k] != v {
			return false
		}
	}
	return true
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// vmRSS is pid's VmRSS line's value, for the log.
func vmRSS(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

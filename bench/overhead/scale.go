package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	iproc "github.com/tcagent/tcagent/internal/proc"
)

// The scale benchmark's steps: distinct executables running, and
// processes of them in all (one each, then spread over them).
var scaleSteps = []struct{ exes, procs int }{{1, 1}, {10, 10}, {25, 25}, {50, 50}, {50, 200}}

// The daemon benchmark's churn: two processes started a second, and eight
// running each making a traced call every 20 ms, 400 a second in all.
const (
	scaleStartEvery = 500 * time.Millisecond
	scaleRequests   = 400 // a second, over every traced process
	scaleSettle     = 5 * time.Second
)

// scaleBench runs one `tcagent daemon` (built-in http on every executable
// of the scale fixture) per build mode, not PIE then PIE, and starts
// processes of 1, 10, 25 and 50 distinct executables, then 200 processes
// of them, at the churn benchmark's rate, while requests run against
// every traced process; after each step it reports the daemon's memory,
// the kernel memory its BPF objects lock, its uprobe links and how long
// the step's processes waited from exec to attached.
func scaleBench(dir string) error {
	tc, err := build(dir, "tcagent", ".", "./cmd/tcagent")
	if err != nil {
		return err
	}
	exes := map[bool][]string{}
	for _, pie := range []bool{false, true} {
		if exes[pie], err = scaleBuilds(pie, scaleSteps[len(scaleSteps)-1].exes); err != nil {
			return err
		}
	}
	unlock, err := benchLock()
	if err != nil {
		return err
	}
	defer unlock()
	var rows []scaleRow
	var ends []string
	for _, pie := range []bool{false, true} {
		r, end, err := scaleRun(dir, tc, exes[pie], pie)
		if err != nil {
			return err
		}
		rows, ends = append(rows, r...), append(ends, end)
	}
	fmt.Printf("tcagent daemon (built-in http, spans as JSON lines counted and dropped); processes started every %v, %d requests/s over the traced ones; each row %v after its last process attached\n\n", scaleStartEvery, scaleRequests, scaleSettle)
	fmt.Println("| build   | executables | processes | RSS, MiB | Pss anon, MiB | Go heap, MiB | BPF maps, MiB (ring buffers) | programs, MiB | uprobe_multi links | attach median, ms | attach p90, ms | analyze / attach, ms |")
	fmt.Println("|---------|-------------|-----------|----------|---------------|--------------|------------------------------|---------------|--------------------|-------------------|----------------|----------------------|")
	for _, r := range rows {
		own := "-"
		if len(r.analyze) > 0 {
			own = fmt.Sprintf("%.0f / %.1f", median(r.analyze), median(r.attach))
		}
		fmt.Printf("| %-7s | %11d | %9d | %8.1f | %13.1f | %12.1f | %28s | %13.1f | %18d | %17s | %14s | %20s |\n", r.build, r.exes, r.procs, r.rss, r.pssAnon, r.heap,
			fmt.Sprintf("%.1f (%.1f)", mib(r.bpf.MapBytes), mib(r.bpf.RingBufferBytes)), mib(r.bpf.ProgramBytes), r.bpf.Links["uprobe_multi"],
			fmt.Sprintf("%.0f (n=%d)", quantile(r.latency, 0.5), len(r.latency)), fmt.Sprintf("%.0f", quantile(r.latency, 0.9)), own)
	}
	fmt.Println()
	for _, e := range ends {
		fmt.Println(e)
	}
	fmt.Println("\nattach: from the process's exec to the daemon's \"attached\" line (its log's time, ms resolution), over the processes the row started;")
	fmt.Println("analyze / attach: the daemon's own times (its \"probes attached\" line), medians over the executables the row added.")
	return nil
}

// scaleRow is one step's measure.
type scaleRow struct {
	build              string
	exes, procs        int
	rss, pssAnon, heap float64
	bpf                iproc.BPFObjects
	latency            []float64 // ms
	// analyze and attach are the daemon's own times for the row's new
	// executables (ms).
	analyze, attach []float64
}

// scaleBuilds builds (or finds cached) n distinct executables of the scale
// fixture, each with its own id (so its own build id), PIE or not: under
// the user's cache directory, keyed by the Go release and the fixture's
// source.
func scaleBuilds(pie bool, n int) ([]string, error) {
	src := "kernel-tests/testdata/scale"
	h := sha256.New()
	for _, f := range []string{"main.go", "go.mod"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return nil, err
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return nil, err
	}
	mode := "exe"
	if pie {
		mode = "pie"
	}
	dir := filepath.Join(cache, "tcagent-bench-scale", runtime.Version()+"-"+hex.EncodeToString(h.Sum(nil))[:12], mode)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	paths := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for i := range paths {
		name := fmt.Sprintf("scale-%s%02d", mode, i)
		paths[i] = filepath.Join(dir, name)
		if _, err := os.Stat(paths[i]); err == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			args := []string{"-ldflags=-X=main.id=" + name, "."}
			if pie {
				args = append([]string{"-buildmode=pie"}, args...)
			}
			// Built aside and renamed: a build cut short is never taken
			// for a cached one.
			tmp, err := build(dir, name+".tmp", src, args...)
			if err == nil {
				err = os.Rename(tmp, paths[i])
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// benchLock takes the benchmarks' lock exclusively (kernel tests take it
// shared), so that no kernel test runs while figures are measured.
func benchLock() (func(), error) {
	f, err := os.OpenFile("/tmp/tcagent-bench.lock", os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock /tmp/tcagent-bench.lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// scaleTarget is a started process of the fixture.
type scaleTarget struct {
	cmd     *exec.Cmd
	url     string
	started time.Time
}

// scaleDaemon is the running daemon, seen from outside: its attached
// lines, its spans counted.
type scaleDaemon struct {
	cmd     *exec.Cmd
	metrics string
	spans   atomic.Int64
	ready   chan struct{}

	mu       sync.Mutex
	attached map[int]time.Time
	// images holds, per executable, its "probes attached" line's analyze
	// and attach times (ms).
	images map[string][2]float64
}

func startScaleDaemon(tc, cfg string) (*scaleDaemon, error) {
	d := &scaleDaemon{metrics: freeAddr(), ready: make(chan struct{}), attached: map[int]time.Time{}, images: map[string][2]float64{}}
	d.cmd = exec.Command(tc, "daemon", "--config", cfg, "--exporter", "jsonl", "--metrics-addr", d.metrics)
	stdout, _ := d.cmd.StdoutPipe()
	stderr, _ := d.cmd.StderrPipe()
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"kind":"server"`) {
				d.spans.Add(1)
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.Contains(line, "daemon ready"):
				once.Do(func() { close(d.ready) })
			case strings.Contains(line, " msg=attached "):
				f := logFields(line)
				pid, _ := strconv.Atoi(f["pid"])
				at, err := time.Parse(time.RFC3339Nano, f["time"])
				if pid > 0 && err == nil {
					d.mu.Lock()
					d.attached[pid] = at
					d.mu.Unlock()
				}
			case strings.Contains(line, ` msg="probes attached" `):
				f := logFields(line)
				an, err1 := time.ParseDuration(f["analyze"])
				at, err2 := time.ParseDuration(f["attach"])
				if err1 == nil && err2 == nil {
					d.mu.Lock()
					d.images[f["exe"]] = [2]float64{ms(an), ms(at)}
					d.mu.Unlock()
				}
			case strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR"):
				fmt.Fprintln(os.Stderr, "daemon:", line)
			}
		}
	}()
	select {
	case <-d.ready:
		return d, nil
	case <-time.After(30 * time.Second):
		stopAgent(d.cmd)
		return nil, fmt.Errorf("daemon not ready within 30s")
	}
}

// logFields reads the key=value fields of a line of the daemon's log
// (slog's text form; no value the benchmark reads is quoted).
func logFields(line string) map[string]string {
	f := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			f[k] = v
		}
	}
	return f
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (d *scaleDaemon) attachedAt(pid int) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.attached[pid]
	return t, ok
}

// scaleRun measures one build mode under a daemon of its own; it returns
// the rows and a line saying what was lost.
func scaleRun(dir, tc string, exes []string, pie bool) ([]scaleRow, string, error) {
	name := "not PIE"
	if pie {
		name = "PIE"
	}
	cfg := filepath.Join(dir, "scale.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("selectors:\n  - exe: %s/scale-*\n    builtin: [http]\n", filepath.Dir(exes[0]))), 0o644)
	d, err := startScaleDaemon(tc, cfg)
	if err != nil {
		return nil, "", err
	}
	defer stopAgent(d.cmd)
	dpid := d.cmd.Process.Pid

	var mu sync.Mutex
	var targets []*scaleTarget
	defer func() {
		for _, tg := range targets {
			tg.cmd.Process.Kill()
			tg.cmd.Wait()
		}
	}()
	// The load: scaleRequests a second, round-robin over the processes
	// the daemon said it attached to (so each request is one span).
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		tr := &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		next := 0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			var live []*scaleTarget
			for _, tg := range targets {
				if _, ok := d.attachedAt(tg.cmd.Process.Pid); ok {
					live = append(live, tg)
				}
			}
			mu.Unlock()
			for i := 0; i < scaleRequests/100 && len(live) > 0; i++ {
				tg := live[next%len(live)]
				next++
				resp, err := client.Get(tg.url + "/r")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok.Add(1)
			}
		}
	}()

	var rows []scaleRow
	prevExes := 0
	for _, step := range scaleSteps {
		var started []*scaleTarget
		for len(targets) < step.procs {
			tg, err := startScaleTarget(exes[len(targets)%step.exes])
			if err != nil {
				close(stop)
				return nil, "", err
			}
			mu.Lock()
			targets = append(targets, tg)
			mu.Unlock()
			started = append(started, tg)
			time.Sleep(scaleStartEvery)
		}
		row := scaleRow{build: name, exes: step.exes, procs: step.procs}
		for _, tg := range started {
			deadline := time.Now().Add(time.Minute)
			at, attached := d.attachedAt(tg.cmd.Process.Pid)
			for ; !attached && time.Now().Before(deadline); at, attached = d.attachedAt(tg.cmd.Process.Pid) {
				time.Sleep(50 * time.Millisecond)
			}
			if !attached {
				close(stop)
				return nil, "", fmt.Errorf("%s: pid %d not attached within a minute", name, tg.cmd.Process.Pid)
			}
			row.latency = append(row.latency, ms(at.Sub(tg.started)))
		}
		d.mu.Lock()
		for _, exe := range exes[prevExes:step.exes] {
			if t, ok := d.images[exe]; ok {
				row.analyze, row.attach = append(row.analyze, t[0]), append(row.attach, t[1])
			}
		}
		d.mu.Unlock()
		prevExes = step.exes
		time.Sleep(scaleSettle)
		row.rss, row.pssAnon = rssMB(dpid), pssAnonMB(dpid)
		row.heap = metricValue(d.metrics, "go_memstats_heap_alloc_bytes ") / (1 << 20)
		if row.bpf, err = iproc.BPF(dpid); err != nil {
			close(stop)
			return nil, "", err
		}
		rows = append(rows, row)
	}
	close(stop)
	<-loaded
	// Every answered request is one server span once the daemon read it.
	for deadline := time.Now().Add(10 * time.Second); d.spans.Load() < ok.Load() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	lost := 0.0
	for _, m := range []string{"tcagent_events_lost_total", "tcagent_daemon_discovery_lost_total", "tcagent_spans_dropped_total", "tcagent_decode_errors_total"} {
		lost += metricValue(d.metrics, m)
	}
	end := fmt.Sprintf("%s: %d requests answered (%d failed), %d server spans; events lost, discovery events lost, spans dropped and decode errors: %.0f",
		name, ok.Load(), failed.Load(), d.spans.Load(), lost)
	return rows, end, nil
}

// startScaleTarget starts a process of exe and reads its address; started
// is taken just before its exec.
func startScaleTarget(exe string) (*scaleTarget, error) {
	cmd := exec.Command(exe)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	tg := &scaleTarget{cmd: cmd, started: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if !ok {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%s did not start: %q", exe, line)
	}
	tg.url = url
	return tg, nil
}

// pssAnonMB is pid's proportional anonymous memory in MiB (smaps_rollup's
// Pss_Anon): its heap, stacks and runtime, without its executable's pages.
func pssAnonMB(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss_Anon:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

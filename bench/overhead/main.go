// Command overhead measures tcagent's overhead on a real service
// (bench/testdata/service), with tcagent running as its own process as users
// run it. Run as root from the repository root:
//
//	go run ./bench/overhead http     # a net/http server under load: unprobed vs the http built-ins, without and with --propagate
//	go run ./bench/overhead attach   # attach and detach times: built-ins, and 100 probes on a large binary
//	go run ./bench/overhead rss      # agent RSS and CPU at 10,000 spans/s, and after 100,000 goroutines of churn
//	go run ./bench/overhead daemon   # the daemon's CPU and RSS while processes start and exit, window by window
//	go run ./bench/overhead scale    # the daemon's memory, kernel memory and attach latency over 1-50 executables, 200 processes
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/probes"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: overhead http|attach|rss|daemon|scale")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "tcagent-overhead-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Printf("kernel %s, %d CPUs, %s\n\n", strings.TrimSpace(string(kernel)), runtime.NumCPU(), runtime.Version())
	switch os.Args[1] {
	case "http":
		err = httpBench(dir)
	case "attach":
		err = attachBench(dir)
	case "rss":
		err = rssBench(dir)
	case "daemon":
		err = daemonBench(dir)
	case "scale":
		err = scaleBench(dir)
	default:
		err = fmt.Errorf("unknown benchmark %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "overhead:", err)
	os.Exit(1)
}

func build(dir, out, pkgDir string, args ...string) (string, error) {
	path := filepath.Join(dir, out)
	cmd := exec.Command("go", append([]string{"build", "-o", path}, args...)...)
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", out, err, b)
	}
	return path, nil
}

type proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startService(bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if !p.out.Scan() || p.out.Text() != "ready" {
		return nil, fmt.Errorf("service did not start")
	}
	return p, nil
}

func (p *proc) send(cmd string) error {
	fmt.Fprintln(p.in, cmd)
	if !p.out.Scan() || p.out.Text() != "ok "+cmd {
		return fmt.Errorf("service did not answer %s", cmd)
	}
	return nil
}

func (p *proc) stop() { p.cmd.Process.Kill(); p.cmd.Wait() }

// startAgent runs the tcagent CLI against pid, spans to /dev/null as JSON.
func startAgent(tcagent string, pid int, args ...string) (*exec.Cmd, error) {
	all := append([]string{"attach", "--pid", strconv.Itoa(pid), "--exporter", "jsonl"}, args...)
	cmd := exec.Command(tcagent, all...)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "attached") {
			go io.Copy(io.Discard, stderr)
			return cmd, nil
		}
	}
	cmd.Wait()
	return nil, fmt.Errorf("tcagent did not attach")
}

func stopAgent(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
}

// cpuSeconds is the user+system CPU time pid has used.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // USER_HZ
}

// rssMB is pid's resident set in MiB.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// metricValue scrapes the agent's endpoint at addr and returns the sum of
// the samples whose line starts with prefix (0 when none): one series'
// value, or a metric's over its labels.
func metricValue(addr, prefix string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

func freeAddr() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return ln.Addr().String()
}

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// quantile is the q-quantile of xs (nearest rank), 0 for none.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

// load sends GET requests from conc keep-alive clients for d and returns
// the requests done and their latencies.
func load(base string, conc int, d time.Duration) (int, []time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var lat []time.Duration
			for i := 0; time.Now().Before(deadline); i++ {
				t := time.Now()
				resp, err := client.Get(fmt.Sprintf("%s/work/%d", base, w*1_000_000+i))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	slices.Sort(all)
	return len(all), all
}

// buildBoth builds the benchmark service and the tcagent CLI.
func buildBoth(dir string) (svc, tc string, err error) {
	if svc, err = build(dir, "service", "bench/testdata/service", "."); err != nil {
		return "", "", err
	}
	tc, err = build(dir, "tcagent", ".", "./cmd/tcagent")
	return svc, tc, err
}

func httpBench(dir string) error {
	svc, tc, err := buildBoth(dir)
	if err != nil {
		return err
	}
	addr := freeAddr()
	s, err := startService(svc, "-addr", addr)
	if err != nil {
		return err
	}
	defer s.stop()
	const conc, rounds = 8, 3
	d := 5 * time.Second
	type result struct{ rps, p50, p99, cpuPer1k, rss []float64 }
	// --propagate adds the kernel's id making at each span's start and the
	// socket programs on the cgroup, which the load's own connections (in
	// the same cgroup) pass through too.
	modes := []string{"unprobed", "tcagent http", "--propagate"}
	res := map[string]*result{}
	for _, m := range modes {
		res[m] = &result{}
	}
	load("http://"+addr, conc, time.Second) // warm up
	for r := 0; r < rounds; r++ {
		for _, mode := range modes {
			var ag *exec.Cmd
			if mode != "unprobed" {
				args := []string{"--builtin", "http", "--metrics-addr", ""}
				if mode == "--propagate" {
					args = append(args, "--propagate")
				}
				if ag, err = startAgent(tc, s.cmd.Process.Pid, args...); err != nil {
					return err
				}
			}
			cpu0 := 0.0
			if ag != nil {
				cpu0 = cpuSeconds(ag.Process.Pid)
			}
			n, lat := load("http://"+addr, conc, d)
			x := res[mode]
			x.rps = append(x.rps, float64(n)/d.Seconds())
			x.p50 = append(x.p50, float64(lat[len(lat)/2].Microseconds()))
			x.p99 = append(x.p99, float64(lat[len(lat)*99/100].Microseconds()))
			if ag != nil {
				x.cpuPer1k = append(x.cpuPer1k, (cpuSeconds(ag.Process.Pid)-cpu0)*1000/float64(n)*1000)
				x.rss = append(x.rss, rssMB(ag.Process.Pid))
				stopAgent(ag)
			}
		}
	}
	fmt.Printf("net/http server, GET /work/{id}, %d keep-alive clients, %v per run, median of %d alternating runs\n\n", conc, d, rounds)
	fmt.Printf("| %-14s | %9s | %9s | %9s | %22s | %13s |\n", "mode", "req/s", "p50 (µs)", "p99 (µs)", "agent CPU ms/1k req", "agent RSS MiB")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 16), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 24), strings.Repeat("-", 15))
	for _, mode := range modes {
		x := res[mode]
		cpu, rss := "-", "-"
		if len(x.cpuPer1k) > 0 {
			cpu, rss = fmt.Sprintf("%.1f", median(x.cpuPer1k)), fmt.Sprintf("%.1f", median(x.rss))
		}
		fmt.Printf("| %-14s | %9.0f | %9.0f | %9.0f | %22s | %13s |\n", mode, median(x.rps), median(x.p50), median(x.p99), cpu, rss)
	}
	return nil
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func attachBench(dir string) error {
	svc, err := build(dir, "service", "bench/testdata/service", ".")
	if err != nil {
		return err
	}
	s, err := startService(svc, "-addr", freeAddr())
	if err != nil {
		return err
	}
	defer s.stop()
	// A large binary: the test Collector (built once and cached).
	out, err := exec.Command("scripts/otelcol.sh").Output()
	if err != nil {
		return fmt.Errorf("build the Collector: %w", err)
	}
	colBin := strings.TrimSpace(string(out))
	cfg := filepath.Join(dir, "otelcol.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
receivers: {otlp: {protocols: {grpc: {endpoint: "%s"}}}}
exporters: {debug: {}}
service:
  telemetry: {metrics: {level: none}}
  pipelines: {traces: {receivers: [otlp], exporters: [debug]}}
`, freeAddr())), 0o644)
	col := exec.Command(colBin, "--config", cfg)
	if err := col.Start(); err != nil {
		return err
	}
	defer func() { col.Process.Kill(); col.Wait() }()
	time.Sleep(2 * time.Second)
	bin, err := probes.Open(colBin)
	if err != nil {
		return err
	}
	var specs []probes.Spec
	for _, name := range bin.Match("go.opentelemetry.io/collector/") {
		if len(specs) == 100 {
			break
		}
		if strings.Contains(name, ".func") || strings.Contains(name, "gowrap") || strings.Contains(name, "deferwrap") {
			continue
		}
		fn, _ := bin.Func(name)
		code, err := bin.Code(fn)
		if err != nil {
			continue
		}
		if pl, err := probes.Place(bin.Arch, code); err == nil && len(pl.Returns) > 0 {
			specs = append(specs, probes.Spec{Symbol: name})
		}
	}
	size := 0.0
	if st, err := os.Stat(colBin); err == nil {
		size = float64(st.Size()) / (1 << 20)
	}
	funcs := bin.Functions()
	bin.Close()

	type row struct {
		name                                 string
		uprobes                              []float64
		analyze, load, attach, detach, total []float64
	}
	// single: one uprobe link per offset, the path kernels before 6.6
	// (no uprobe_multi) take, forced here.
	measure := func(name string, pid int, specs []probes.Spec, builtins []string, single bool) (*row, error) {
		if single {
			name += ", single"
		}
		r := &row{name: name}
		for i := 0; i < 5; i++ {
			sess, err := agent.Attach(agent.Config{ImageConfig: agent.ImageConfig{Specs: specs, Builtin: builtins, SingleUprobes: single}, SessionConfig: agent.SessionConfig{PID: pid, Processor: sdktrace.NewSimpleSpanProcessor(discard{})}})
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			sess.Run(ctx) // returns at once: detaches
			sess.Close()
			t := sess.Timings()
			r.analyze = append(r.analyze, ms(t.Analyze))
			r.load = append(r.load, ms(t.Load))
			r.attach = append(r.attach, ms(t.Attach))
			r.detach = append(r.detach, ms(t.Detach))
			r.total = append(r.total, ms(t.Analyze+t.Load+t.Attach))
			r.uprobes = append(r.uprobes, float64(sess.Snapshot().Uprobes))
		}
		return r, nil
	}
	rows := []*row{}
	for _, single := range []bool{false, true} {
		r, err := measure("built-in http, service", s.cmd.Process.Pid, nil, nil, single)
		if err != nil {
			return err
		}
		rows = append(rows, r)
		if r, err = measure(fmt.Sprintf("%d custom probes, Collector", len(specs)), col.Process.Pid, specs, []string{}, single); err != nil {
			return err
		}
		rows = append(rows, r)
	}
	fmt.Printf("attach and detach, in ms, median of 5 (the Collector: %.0f MiB, %d functions)\n\n", size, funcs)
	fmt.Printf("| %-36s | %7s | %8s | %8s | %8s | %8s |\n", "what", "uprobes", "analyze", "load", "attach", "detach")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 38), strings.Repeat("-", 9), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 10))
	for _, r := range rows {
		fmt.Printf("| %-36s | %7.0f | %8.1f | %8.1f | %8.1f | %8.1f |\n", r.name, median(r.uprobes), median(r.analyze), median(r.load), median(r.attach), median(r.detach))
	}
	fmt.Println("\nanalyze: reading the binary and compiling the probes; load: the BPF programs and recipes;")
	fmt.Println("attach: the uprobe_multi links (single: one link per offset); detach: closing them. Runtime probes (goroutines, panics) are included.")
	return nil
}

func rssBench(dir string) error {
	svc, tc, err := buildBoth(dir)
	if err != nil {
		return err
	}
	s, err := startService(svc, "-rate", "10000")
	if err != nil {
		return err
	}
	defer s.stop()
	probesFile := filepath.Join(dir, "probes.yaml")
	os.WriteFile(probesFile, []byte("probes:\n  - {symbol: main.Tick, name: tick}\n  - {symbol: main.Churn, name: churn}\n"), 0o644)
	metrics := freeAddr()
	ag, err := startAgent(tc, s.cmd.Process.Pid, "--probes", probesFile, "--builtin", "none", "--metrics-addr", metrics)
	if err != nil {
		return err
	}
	defer stopAgent(ag)
	pid := ag.Process.Pid
	calls := func() float64 { return metricValue(metrics, `tcagent_probe_calls_total{probe="tick"`) }
	time.Sleep(3 * time.Second) // warm up
	rss0, c0, cpu0, t0 := rssMB(pid), calls(), cpuSeconds(pid), time.Now()
	peak := rss0
	for i := 0; i < 10; i++ {
		time.Sleep(time.Second)
		peak = max(peak, rssMB(pid))
	}
	el := time.Since(t0).Seconds()
	rate := (calls() - c0) / el
	cpu := (cpuSeconds(pid) - cpu0) / el * 100
	steady := rssMB(pid)
	if err := s.send("churn"); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	afterChurn := rssMB(pid)
	fmt.Printf("tcagent (its own process, spans as JSON lines to /dev/null) on a service calling a traced function\n\n")
	fmt.Printf("| %-44s | %10s |\n", "measure", "value")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 46), strings.Repeat("-", 12))
	fmt.Printf("| %-44s | %10.0f |\n", "spans/s measured", rate)
	fmt.Printf("| %-44s | %10.1f |\n", "agent CPU, % of one core", cpu)
	fmt.Printf("| %-44s | %10.1f |\n", "agent RSS after warm-up, MiB", rss0)
	fmt.Printf("| %-44s | %10.1f |\n", "agent RSS peak over 10 s, MiB", peak)
	fmt.Printf("| %-44s | %10.1f |\n", "agent RSS at steady state, MiB", steady)
	fmt.Printf("| %-44s | %10.1f |\n", "agent RSS 3 s after 100,000 goroutines, MiB", afterChurn)
	fmt.Printf("| %-44s | %+9.1f%% |\n", "after churn vs steady state", (afterChurn/steady-1)*100)
	return nil
}

// daemonBench runs `tcagent daemon` while traced processes of two
// executables come and go (the kernel tests' churn fixture: a traced call
// every 20 ms each), and reports its CPU and RSS per 10 s window: idle,
// six windows of churn, and idle again once every process exited.
func daemonBench(dir string) error {
	_, tc, err := buildBoth(dir)
	if err != nil {
		return err
	}
	var bins []string
	for _, name := range []string{"churn-a", "churn-b"} {
		b, err := build(dir, name, "kernel-tests/testdata/churn", ".")
		if err != nil {
			return err
		}
		bins = append(bins, b)
	}
	os.WriteFile(filepath.Join(dir, "probes.yaml"), []byte("probes:\n  - {symbol: main.Boot, name: boot}\n  - {symbol: main.Work, name: work}\n"), 0o644)
	cfg := filepath.Join(dir, "daemon.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("selectors:\n  - exe: %s/churn-*\n    probes: probes.yaml\n    builtin: [none]\n", dir)), 0o644)
	metrics := freeAddr()
	cmd := exec.Command(tc, "daemon", "--config", cfg, "--exporter", "jsonl", "--metrics-addr", metrics)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	defer stopAgent(cmd)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "daemon ready") {
	}
	go io.Copy(io.Discard, stderr)
	pid := cmd.Process.Pid
	// The Go heap, from the daemon's own metrics: RSS keeps what the
	// runtime has not returned yet; the heap says what is held.
	heapMB := func() float64 { return metricValue(metrics, "go_memstats_heap_alloc_bytes ") / (1 << 20) }
	type window struct {
		name                string
		started             int
		cpu, rss, max, heap float64
	}
	var rows []window
	var running []*exec.Cmd
	measure := func(name string, churn bool) {
		w := window{name: name}
		cpu0, t0 := cpuSeconds(pid), time.Now()
		for time.Since(t0) < 10*time.Second {
			if churn {
				// Two starts a second, one of each executable; past eight
				// running, the oldest is killed.
				for _, b := range bins {
					c := exec.Command(b, "--tag", "bench")
					if c.Start() == nil {
						running = append(running, c)
						w.started++
					}
				}
				for len(running) > 8 {
					running[0].Process.Kill()
					running[0].Wait()
					running = running[1:]
				}
			}
			time.Sleep(500 * time.Millisecond)
			w.max = max(w.max, rssMB(pid))
		}
		w.cpu = (cpuSeconds(pid) - cpu0) / time.Since(t0).Seconds() * 100
		w.rss, w.heap = rssMB(pid), heapMB()
		rows = append(rows, w)
	}
	measure("idle, before", false)
	for i := 1; i <= 6; i++ {
		measure(fmt.Sprintf("churn %d", i), true)
	}
	for _, c := range running {
		c.Process.Kill()
		c.Wait()
	}
	running = nil
	measure("idle, after", false)
	fmt.Printf("tcagent daemon (its own process, spans as JSON lines to /dev/null), processes of two executables started and killed\n\n")
	fmt.Printf("| %-14s | %17s | %16s | %12s | %12s | %13s |\n", "10 s window", "processes started", "CPU, % of a core", "RSS end, MiB", "RSS max, MiB", "Go heap, MiB")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 16), strings.Repeat("-", 19), strings.Repeat("-", 18), strings.Repeat("-", 14), strings.Repeat("-", 14), strings.Repeat("-", 15))
	for _, w := range rows {
		fmt.Printf("| %-14s | %17d | %16.1f | %12.1f | %12.1f | %13.1f |\n", w.name, w.started, w.cpu, w.rss, w.max, w.heap)
	}
	return nil
}

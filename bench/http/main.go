// Command http measures, side by side in one run, what tracing costs a
// net/http server and a program that starts goroutines (issue #20's
// baseline). Run as root from the repository root, with wrk installed:
//
//	go run ./bench/http [-go go1.24.13,go1.27.3] [-rounds 3] [-duration 5s] [-before AGENT] [-server gin]
//
// For each Go release it builds bench/testdata/hello (a hello server) and
// bench/testdata/churn (a goroutine-churn target) and measures:
//
//   - the server under `wrk -t2 -c20` untraced, traced by `tcagent attach
//     --builtin http --exporter jsonl --output FILE`, and traced with
//     --propagate too: req/s and its ratio to untraced, the server's and the
//     agent's CPU µs per request (/proc/PID/stat utime+stime over the load
//     window), the agent's peak RSS (VmHWM) and the spans it wrote per
//     request (a check that tracing happened);
//   - ns per `go` statement in the churn target untraced and traced by an
//     agent whose only custom probe is on a function never called, so that
//     only the runtime's goroutine probes fire.
//
// With -server gin the server is bench/testdata/gin (the same body from a
// gin route, /hello/:id), traced by `--builtin http` and by `--builtin
// http,routes` (what the routes set's probe adds per request), and the
// churn target is not run.
//
// Modes alternate for the given rounds on one process per build; medians are
// printed. Every ratio compares figures of the same run. With -before, an
// agent binary built elsewhere (say, from an earlier commit) runs every
// traced mode too, in rows marked "(before)": a change's effect measured
// in one run.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcagent/tcagent/internal/gotoolchain"
)

func main() {
	toolchains := flag.String("go", "go1.24.13,go1.27.3", "Go releases to build the targets with, comma-separated")
	rounds := flag.Int("rounds", 3, "rounds of every mode (medians are reported)")
	duration := flag.Duration("duration", 5*time.Second, "wrk load per measurement")
	churnN := flag.Int("goroutines", 50000, "goroutines started per churn measurement")
	before := flag.String("before", "", "a tcagent binary measured beside this tree's in every traced mode, in rows marked (before)")
	server := flag.String("server", "hello", "the server: hello (net/http), or gin (a gin route, with and without the routes set)")
	flag.Parse()
	if *server != "hello" && *server != "gin" {
		fmt.Fprintln(os.Stderr, "bench/http: -server: want hello or gin")
		os.Exit(2)
	}
	if err := run(strings.Split(*toolchains, ","), *rounds, *duration, *churnN, *before, *server); err != nil {
		fmt.Fprintln(os.Stderr, "bench/http:", err)
		os.Exit(1)
	}
}

func run(toolchains []string, rounds int, d time.Duration, churnN int, before, server string) error {
	if rounds < 1 || d < time.Second || churnN < 1 {
		return errors.New("-rounds and -goroutines must be positive and -duration at least 1s")
	}
	if before != "" {
		if _, err := exec.LookPath(before); err != nil {
			return fmt.Errorf("-before: %w", err)
		}
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found (apt-get install -y wrk)")
	}
	dir, err := os.MkdirTemp("", "tcagent-bench-http-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tcagent := filepath.Join(dir, "tcagent")
	cmd := exec.Command("go", "build", "-o", tcagent, "./cmd/tcagent")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build tcagent (run from the repository root): %v\n%s", err, b)
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("kernel %s, %d CPUs, agent built by %s, load average before: %s\n", strings.TrimSpace(string(kernel)),
		runtime.NumCPU(), runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Printf("wrk -t2 -c20 -d%s, %d rounds, medians\n\n", d, rounds)

	var httpRows, churnRows []string
	for _, tc := range toolchains {
		hello, churn := filepath.Join(dir, server+"-"+tc), filepath.Join(dir, "churn-"+tc)
		modcache := filepath.Join(dir, "modcache")
		if err := gotoolchain.Build(tc, "bench/testdata/"+server, hello, modcache, "."); err != nil {
			return err
		}
		modes, path := []mode{
			{"untraced", nil, ""},
			{"traced", []string{"--builtin", "http"}, ""},
			{"traced --propagate", []string{"--builtin", "http", "--propagate"}, ""},
		}, "/"
		if server == "gin" {
			modes[2], path = mode{"traced +routes", []string{"--builtin", "http,routes"}, ""}, "/hello/7"
		}
		rows, err := httpBench(tcagent, withBefore(modes, before), hello, path, dir, tc, rounds, d)
		if err != nil {
			return fmt.Errorf("%s: %w", tc, err)
		}
		httpRows = append(httpRows, rows...)
		if server == "gin" {
			continue
		}
		if err := gotoolchain.Build(tc, "bench/testdata/churn", churn, modcache, "."); err != nil {
			return err
		}
		rows, err = churnBench(tcagent, before, churn, dir, tc, rounds, churnN)
		if err != nil {
			return fmt.Errorf("%s churn: %w", tc, err)
		}
		churnRows = append(churnRows, rows...)
	}
	fmt.Println("| server | mode | req/s | vs untraced | server CPU µs/req | agent CPU µs/req | agent peak RSS MiB | spans/req |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range httpRows {
		fmt.Println(r)
	}
	if len(churnRows) > 0 {
		fmt.Println()
		fmt.Println("| churn target | mode | ns per go statement | vs untraced |")
		fmt.Println("|---|---|---|---|")
		for _, r := range churnRows {
			fmt.Println(r)
		}
	}
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("\nload average after: %s\n", strings.Join(strings.Fields(string(load))[:3], " "))
	return nil
}

// mode is one way of running a target: untraced (no agent) or with an
// agent started with args.
type mode struct {
	name  string
	args  []string // nil: untraced
	agent string   // the tcagent binary; "" for this tree's
}

// withBefore adds to modes, when before names an agent binary, each traced
// mode run by that binary.
func withBefore(modes []mode, before string) []mode {
	if before == "" {
		return modes
	}
	for _, m := range modes {
		if m.args != nil {
			modes = append(modes, mode{m.name + " (before)", m.args, before})
		}
	}
	return modes
}

// agentOf is the binary that runs mode m.
func (m mode) agentOf(tcagent string) string {
	if m.agent != "" {
		return m.agent
	}
	return tcagent
}

type httpSample struct {
	rps, serverUS, agentUS, agentHWM, spansPerReq float64
}

func httpBench(tcagent string, modes []mode, hello, path, dir, tc string, rounds int, d time.Duration) ([]string, error) {
	srv := exec.Command(hello)
	out, _ := srv.StdoutPipe()
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return nil, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		return nil, errors.New("hello server printed no address")
	}
	url := "http://" + sc.Text() + path
	spans := filepath.Join(dir, "spans.jsonl")
	samples := make([][]httpSample, len(modes))
	for r := 0; r < rounds; r++ {
		for i, m := range modes {
			var agent *exec.Cmd
			if m.args != nil {
				var err error
				if agent, err = startAgent(m.agentOf(tcagent), srv.Process.Pid, spans, m.args...); err != nil {
					return nil, fmt.Errorf("%s: %w", m.name, err)
				}
			}
			warm, err := wrk(url, time.Second) // warm-up: connections, the agent's first spans
			if err != nil {
				stopAgent(agent)
				return nil, err
			}
			s0, a0 := cpuSeconds(srv.Process.Pid), agentCPU(agent)
			reqs, err := wrk(url, d)
			s1, a1 := cpuSeconds(srv.Process.Pid), agentCPU(agent)
			if err != nil {
				stopAgent(agent)
				return nil, err
			}
			s := httpSample{rps: float64(reqs) / d.Seconds(), serverUS: (s1 - s0) * 1e6 / float64(reqs)}
			if agent != nil {
				s.agentUS = (a1 - a0) * 1e6 / float64(reqs)
				s.agentHWM = statusMiB(agent.Process.Pid, "VmHWM:")
				stopAgent(agent)
				n, err := countLines(spans)
				if err != nil {
					return nil, err
				}
				// The file holds the warm-up's spans too.
				s.spansPerReq = float64(n) / float64(warm+reqs)
				os.Remove(spans)
			}
			samples[i] = append(samples[i], s)
			fmt.Fprintf(os.Stderr, "%s round %d %-18s %8.0f req/s\n", tc, r+1, m.name, s.rps)
		}
	}
	var rows []string
	base := median(samples[0], func(s httpSample) float64 { return s.rps })
	for i, m := range modes {
		rps := median(samples[i], func(s httpSample) float64 { return s.rps })
		row := fmt.Sprintf("| %s | %s | %.0f | %.3f× | %.1f |", tc, m.name, rps, rps/base,
			median(samples[i], func(s httpSample) float64 { return s.serverUS }))
		if m.args == nil {
			row += " - | - | - |"
		} else {
			row += fmt.Sprintf(" %.1f | %.1f | %.2f |",
				median(samples[i], func(s httpSample) float64 { return s.agentUS }),
				median(samples[i], func(s httpSample) float64 { return s.agentHWM }),
				median(samples[i], func(s httpSample) float64 { return s.spansPerReq }))
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func churnBench(tcagent, before, churn, dir, tc string, rounds, n int) ([]string, error) {
	target := exec.Command(churn)
	in, _ := target.StdinPipe()
	out, _ := target.StdoutPipe()
	target.Stderr = os.Stderr
	if err := target.Start(); err != nil {
		return nil, err
	}
	defer func() { target.Process.Kill(); target.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		return nil, errors.New("churn target did not start")
	}
	measure := func() (float64, error) {
		fmt.Fprintln(in, n)
		if !sc.Scan() {
			return 0, errors.New("churn target did not answer")
		}
		return strconv.ParseFloat(sc.Text(), 64)
	}
	probesFile := filepath.Join(dir, "churn-probes.yaml")
	if err := os.WriteFile(probesFile, []byte("probes:\n  - symbol: main.Unused\n"), 0o644); err != nil {
		return nil, err
	}
	spans := filepath.Join(dir, "churn-spans.jsonl")
	modes := withBefore([]mode{{"untraced", nil, ""}, {"goroutine probes only", []string{"--builtin", "none", "--probes", probesFile}, ""}}, before)
	samples := make([][]float64, len(modes))
	if _, err := measure(); err != nil { // warm-up: the scheduler's free g list
		return nil, err
	}
	for r := 0; r < rounds; r++ {
		for i, m := range modes {
			var agent *exec.Cmd
			if m.args != nil {
				var err error
				if agent, err = startAgent(m.agentOf(tcagent), target.Process.Pid, spans, m.args...); err != nil {
					return nil, fmt.Errorf("%s: %w", m.name, err)
				}
			}
			ns, err := measure()
			stopAgent(agent)
			if err != nil {
				return nil, err
			}
			samples[i] = append(samples[i], ns)
			fmt.Fprintf(os.Stderr, "%s round %d churn %-22s %8.0f ns/go\n", tc, r+1, m.name, ns)
		}
	}
	id := func(f float64) float64 { return f }
	base := median(samples[0], id)
	var rows []string
	for i, m := range modes {
		ns := median(samples[i], id)
		rows = append(rows, fmt.Sprintf("| %s | %s | %.0f | %.2f× |", tc, m.name, ns, ns/base))
	}
	return rows, nil
}

// startAgent runs `tcagent attach` against pid with spans written as JSON
// lines to spans, no metrics endpoint (other agents may run), and returns
// once it logged that it attached.
func startAgent(tcagent string, pid int, spans string, args ...string) (*exec.Cmd, error) {
	all := append([]string{"attach", "--pid", strconv.Itoa(pid), "--exporter", "jsonl", "--output", spans, "--metrics-addr", ""}, args...)
	cmd := exec.Command(tcagent, all...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stderr)
	var log []string
	for sc.Scan() {
		log = append(log, sc.Text())
		if strings.Contains(sc.Text(), "msg=attached") {
			go io.Copy(io.Discard, stderr)
			return cmd, nil
		}
	}
	cmd.Wait()
	return nil, fmt.Errorf("tcagent did not attach:\n%s", strings.Join(log, "\n"))
}

// stopAgent ends the agent as a user does (SIGINT: it detaches and flushes)
// and waits for it.
func stopAgent(cmd *exec.Cmd) {
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
}

func agentCPU(cmd *exec.Cmd) float64 {
	if cmd == nil {
		return 0
	}
	return cpuSeconds(cmd.Process.Pid)
}

var wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)

// wrk loads url for d with 2 threads and 20 connections and returns the
// requests it completed; socket errors or non-2xx answers are an error.
func wrk(url string, d time.Duration) (int, error) {
	out, err := exec.Command("wrk", "-t2", "-c20", "-d"+strconv.Itoa(int(d.Seconds()))+"s", url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	return parseWrk(out)
}

// parseWrk returns the requests wrk's report says it completed.
func parseWrk(out []byte) (int, error) {
	if strings.Contains(string(out), "Socket errors") || strings.Contains(string(out), "Non-2xx") {
		return 0, fmt.Errorf("wrk saw errors:\n%s", out)
	}
	m := wrkRequests.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk output has no request count:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	if n == 0 {
		return 0, fmt.Errorf("wrk completed no request:\n%s", out)
	}
	return n, nil
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

// statusMiB reads a kB field of /proc/PID/status (VmHWM: the peak RSS) in MiB.
func statusMiB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("spans: %w", err)
	}
	defer f.Close()
	n := 0
	buf := make([]byte, 1<<16)
	for {
		k, err := f.Read(buf)
		for _, c := range buf[:k] {
			if c == '\n' {
				n++
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

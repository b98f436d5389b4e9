package kerneltests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

var (
	collectorOnce sync.Once
	collectorBin  string
	collectorErr  error
)

// collector builds (or finds cached) the test Collector.
func collector(t *testing.T) string {
	t.Helper()
	collectorOnce.Do(func() {
		out, err := exec.Command("../scripts/otelcol.sh").Output()
		if err != nil {
			collectorErr = fmt.Errorf("build the Collector: %v", err)
			if ee, ok := err.(*exec.ExitError); ok {
				collectorErr = fmt.Errorf("build the Collector: %v\n%s", err, ee.Stderr)
			}
			return
		}
		collectorBin = strings.TrimSpace(string(out))
	})
	if collectorErr != nil {
		t.Fatal(collectorErr)
	}
	return collectorBin
}

// runningCollector is a Collector whose debug exporter logs every span.
type runningCollector struct {
	cmd        *exec.Cmd
	log        *lockedBuffer
	grpc, http int
	config     string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startCollector(t *testing.T, grpcPort, httpPort int) *runningCollector {
	t.Helper()
	config := filepath.Join(t.TempDir(), "otelcol.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf(`
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%d"}
      http: {endpoint: "127.0.0.1:%d"}
exporters:
  debug:
    verbosity: detailed
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
`, grpcPort, httpPort)), 0o644)
	c := &runningCollector{log: &lockedBuffer{}, grpc: grpcPort, http: httpPort, config: config}
	c.start(t)
	return c
}

func (c *runningCollector) start(t *testing.T) {
	t.Helper()
	c.cmd = exec.Command(collector(t), "--config", c.config)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.http)); err == nil {
			conn.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Collector did not listen within 20s:\n%s", c.log.String())
}

func (c *runningCollector) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		c.cmd = nil
	}
}

// collectedSpan is a span as the debug exporter logged it.
type collectedSpan struct {
	name, id, parent, status, message string
	resource                          map[string]string
}

var debugAttr = regexp.MustCompile(`^\s*-> ([^:]+): \w+\((.*)\)$`)

// spans parses the debug exporter's log.
func (c *runningCollector) spans() []collectedSpan {
	var out []collectedSpan
	var res map[string]string
	inResource := false
	var cur *collectedSpan
	sc := bufio.NewScanner(strings.NewReader(c.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	field := func(line, name string) (string, bool) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, name) {
			return "", false
		}
		rest := strings.TrimSpace(strings.TrimPrefix(line, name))
		if !strings.HasPrefix(rest, ":") {
			return "", false
		}
		return strings.TrimSpace(strings.TrimPrefix(rest, ":")), true
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "Resource attributes:"):
			res, inResource = map[string]string{}, true
			continue
		case strings.HasPrefix(line, "ScopeSpans #"):
			inResource = false
		case strings.HasPrefix(line, "Span #"):
			out = append(out, collectedSpan{resource: res})
			cur = &out[len(out)-1]
			continue
		}
		if inResource {
			if m := debugAttr.FindStringSubmatch(line); m != nil {
				res[m[1]] = m[2]
			}
			continue
		}
		if cur == nil {
			continue
		}
		if v, ok := field(line, "Name"); ok {
			cur.name = v
		} else if v, ok := field(line, "Parent ID"); ok {
			cur.parent = v
		} else if v, ok := field(line, "ID"); ok {
			cur.id = v
		} else if v, ok := field(line, "Status code"); ok {
			cur.status = v
		} else if v, ok := field(line, "Status message"); ok {
			cur.message = v
		}
	}
	return out
}

// agentProc is tcagent attached by the CLI.
type agentProc struct {
	cmd     *exec.Cmd
	stdout  *lockedBuffer // the spans, with --exporter jsonl or stdout
	stderr  *lockedBuffer
	metrics string
}

func startAgent(t *testing.T, pid int, probesFile string, env []string, args ...string) *agentProc {
	t.Helper()
	metricsPort := freePort(t)
	a := &agentProc{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, metrics: fmt.Sprintf("127.0.0.1:%d", metricsPort)}
	all := append([]string{"attach", "--pid", strconv.Itoa(pid), "--probes", probesFile, "--metrics-addr", a.metrics}, args...)
	a.cmd = exec.Command(tcagent(t), all...)
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stderr = a.stderr
	a.cmd.Stdout = a.stdout
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cmd.Process.Kill(); a.cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + a.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return a
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("agent not ready within 20s:\n%s", a.stderr.String())
	return nil
}

func (a *agentProc) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGINT)
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("agent exited with %v:\n%s", err, a.stderr.String())
	}
}

// metric returns the sum of the samples of name in the agent's /metrics
// whose labels contain every one of match.
func (a *agentProc) metric(t *testing.T, name string, match ...string) float64 {
	t.Helper()
	return scrape(t, a.metrics, name, match...)
}

// scrape reads the endpoint at addr: the sum of the series of name whose
// labels contain every one of match.
func scrape(t *testing.T, addr, name string, match ...string) float64 {
	t.Helper()
	return sample(t, scrapeBody(t, addr), name, match...)
}

// scrapeBody reads /metrics once.
func scrapeBody(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// sample sums the series of name in one scrape whose labels include every
// one in match; it fails the test when there is none.
func sample(t *testing.T, body, name string, match ...string) float64 {
	t.Helper()
	sum, found := sampleFound(t, body, name, match...)
	if !found {
		t.Fatalf("no %s %v in /metrics", name, match)
	}
	return sum
}

// sampleFound is sample for a series that may not exist yet (a histogram's
// before its first observation).
func sampleFound(t *testing.T, body, name string, match ...string) (float64, bool) {
	t.Helper()
	sum, found := 0.0, false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		sum, found = sum+v, true
	}
	return sum, found
}

const exportProbes = `
probes:
  - {symbol: main.Outer, name: outer}
  - {symbol: main.Middle, name: middle}
  - symbol: main.Fail
    name: fail
    attributes: [{key: mode, from: arg0, type: int}]
`

// waitFor polls cond until it holds; it fails only when cond never holds
// within a minute, a deadline no working run comes near.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestOTLPToCollector sends spans to a real Collector over gRPC and over
// HTTP, configured by the standard variables, and checks what it received.
func TestOTLPToCollector(t *testing.T) {
	b := newest(t, false)
	probesFile := writeFile(t, "p.yaml", exportProbes)
	for _, proto := range []string{"grpc", "http/protobuf"} {
		t.Run(strings.ReplaceAll(proto, "/", "-"), func(t *testing.T) {
			col := startCollector(t, freePort(t), freePort(t))
			endpoint := fmt.Sprintf("http://127.0.0.1:%d", col.http)
			if proto == "grpc" {
				endpoint = fmt.Sprintf("http://127.0.0.1:%d", col.grpc)
			}
			tg := startTarget(t, b.path)
			ag := startAgent(t, tg.pid(), probesFile, []string{
				"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=" + proto,
				"OTEL_SERVICE_NAME=fixture-svc", "OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=test,team=core",
			})
			tg.run(t, "nested")
			tg.run(t, "errors")
			ag.stop(t) // flushes
			waitFor(t, "6 spans at the Collector", func() bool { return len(col.spans()) >= 6 })
			spans := col.spans()
			if len(spans) != 6 {
				t.Fatalf("Collector got %d spans, want 6", len(spans))
			}
			byName := map[string][]collectedSpan{}
			for _, s := range spans {
				byName[s.name] = append(byName[s.name], s)
			}
			if byName["middle"][0].parent != byName["outer"][0].id {
				t.Errorf("middle's parent %q, outer's id %q", byName["middle"][0].parent, byName["outer"][0].id)
			}
			errs := 0
			for _, f := range byName["fail"] {
				if f.status == "Error" {
					errs++
				}
			}
			if errs != 3 {
				t.Errorf("%d failing spans with status Error, want 3", errs)
			}
			res := spans[0].resource
			want := map[string]string{
				"service.name": "fixture-svc", "deployment.environment.name": "test", "team": "core",
				"process.pid": strconv.Itoa(tg.pid()), "process.runtime.name": "go",
				"process.runtime.version": strings.TrimPrefix(b.release, "go"), "telemetry.distro.name": "tcagent",
				"process.executable.name": filepath.Base(b.path), "process.executable.path": b.path,
			}
			for k, v := range want {
				if got := res[k]; !strings.Contains(got, v) {
					t.Errorf("resource %s = %q, want %q", k, got, v)
				}
			}
			for _, k := range []string{"service.instance.id", "host.name", "telemetry.distro.version"} {
				if res[k] == "" {
					t.Errorf("resource lacks %s: %v", k, res)
				}
			}
		})
	}
}

// TestCollectorOutage stops the Collector mid-run: the agent keeps tracing,
// counts the failed exports, and delivers again once the Collector is back.
func TestCollectorOutage(t *testing.T) {
	b := newest(t, false)
	col := startCollector(t, freePort(t), freePort(t))
	tg := startTarget(t, b.path)
	ag := startAgent(t, tg.pid(), writeFile(t, "p.yaml", exportProbes), nil,
		"--exporter", "otlp", "--otlp-protocol", "http/protobuf", "--otlp-endpoint", fmt.Sprintf("http://127.0.0.1:%d", col.http))
	tg.run(t, "nested")
	waitFor(t, "first spans exported", func() bool { return ag.metric(t, "tcagent_spans_exported_total") >= 2 })
	col.stop()
	tg.run(t, "nested")
	waitFor(t, "a failed export counted", func() bool { return ag.metric(t, "tcagent_export_errors_total") >= 1 })
	if f := ag.metric(t, "tcagent_spans_export_failed_total"); f < 2 {
		t.Errorf("spans in failed exports: %v, want at least 2", f)
	}
	tg.run(t, "nested") // still traced while the Collector is away
	col.log = &lockedBuffer{}
	col.start(t)
	exported := ag.metric(t, "tcagent_spans_exported_total")
	tg.run(t, "nested")
	waitFor(t, "exports after the Collector came back", func() bool { return ag.metric(t, "tcagent_spans_exported_total") >= exported+2 })
	waitFor(t, "spans at the restarted Collector", func() bool { return len(col.spans()) >= 2 })
	if n := ag.metric(t, "tcagent_probe_calls_total", `probe="outer"`); n != 4 {
		t.Errorf("outer calls counted %v, want 4: tracing stopped during the outage", n)
	}
	ag.stop(t)
}

// TestPrometheusScrapes runs a real Prometheus against the endpoint and
// queries the histogram and the loss counter; promtool accepts the output.
func TestPrometheusScrapes(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatal("prometheus is not installed (apt-get install prometheus): scripts/test-setup.sh installs it")
	}
	b := newest(t, false)
	tg := startTarget(t, b.path)
	ag := startAgent(t, tg.pid(), writeFile(t, "p.yaml", exportProbes), nil, "--exporter", "jsonl")
	tg.run(t, "nested")
	tg.run(t, "errors")

	resp, err := http.Get("http://" + ag.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if r, err := http.Get("http://" + ag.metrics + "/healthz"); err != nil || r.StatusCode != 200 {
		t.Errorf("/healthz: %v %v", r, err)
	}

	dir := t.TempDir()
	promPort := freePort(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: tcagent
    static_configs: [{targets: ["%s"]}]
`, ag.metrics)), 0o644)
	prom := exec.Command("prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	plog := &lockedBuffer{}
	prom.Stdout, prom.Stderr = plog, plog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { prom.Process.Kill(); prom.Wait() }()
	query := func(q string) (float64, bool) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", promPort, url.QueryEscape(q)))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" || len(r.Data.Result) == 0 {
			return 0, false
		}
		v, err := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
		return v, err == nil
	}
	var outer, fails, errs, lost float64
	waitFor(t, "Prometheus to scrape the histogram and the loss counter", func() bool {
		var ok1, ok2, ok3, ok4 bool
		outer, ok1 = query(`sum(tcagent_probe_duration_seconds_count{probe="outer"})`)
		fails, ok2 = query(`sum(tcagent_probe_calls_total{probe="fail"})`)
		errs, ok3 = query(`sum(tcagent_probe_errors_total{probe="fail"})`)
		lost, ok4 = query(`sum(tcagent_events_lost_total)`)
		return ok1 && ok2 && ok3 && ok4
	})
	if outer != 1 || fails != 4 || errs != 3 || lost != 0 {
		t.Errorf("Prometheus has outer=%v fail=%v errors=%v lost=%v, want 1 4 3 0", outer, fails, errs, lost)
	}
	ag.stop(t)
}

// TestSamplerFlagOverridesEnv: OTEL_TRACES_SAMPLER=always_off drops every
// trace; --sampler always_on overrides it.
func TestSamplerFlagOverridesEnv(t *testing.T) {
	b := newest(t, false)
	probesFile := writeFile(t, "p.yaml", exportProbes)
	for _, c := range []struct {
		args []string
		want int
	}{{nil, 0}, {[]string{"--sampler", "always_on"}, 2}, {[]string{"--sampler", "traceidratio", "--sampler-arg", "0"}, 0}} {
		tg := startTarget(t, b.path)
		args := append([]string{"attach", "--pid", strconv.Itoa(tg.pid()), "--probes", probesFile, "--exporter", "jsonl", "--metrics-addr", ""}, c.args...)
		cmd := exec.Command(tcagent(t), args...)
		cmd.Env = append(os.Environ(), "OTEL_TRACES_SAMPLER=always_off")
		var out bytes.Buffer
		logs := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = &out, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "attached", func() bool { return strings.Contains(logs.String(), "attached") })
		tg.run(t, "nested")
		cmd.Process.Signal(syscall.SIGINT) // the agent drains before it exits
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, logs.String())
		}
		if n := strings.Count(out.String(), "\n"); n != c.want {
			t.Errorf("%v with OTEL_TRACES_SAMPLER=always_off: %d spans, want %d", c.args, n, c.want)
		}
	}
}

// TestMetricsByName reads, by the names the README gives them, the counters
// of incoming trace context ignored and of traces joined to the program's
// own OpenTelemetry SDK, from the CLI's endpoint: each waited for until it
// shows exactly the count of what the fixture did.
func TestMetricsByName(t *testing.T) {
	t.Run("tcagent_trace_context_invalid_total", func(t *testing.T) {
		tg := startTarget(t, newest(t, false).path)
		ag := startCLI(t, []int{tg.pid()})
		tg.run(t, "tracecontext") // a malformed and an oversized traceparent among valid ones
		if n := ag.settled(t, 2, "tcagent_trace_context_invalid_total", fmt.Sprintf(`pid="%d"`, tg.pid())); n != 2 {
			t.Errorf("tcagent_trace_context_invalid_total %v, want 2", n)
		}
		ag.stop(t)
	})
	t.Run("tcagent_traces_joined_total", func(t *testing.T) {
		b := newestOf(t, "otelsdk")
		tg := startTarget(t, b.path, "SPANS="+filepath.Join(t.TempDir(), "spans"))
		ag := startCLI(t, []int{tg.pid()}, "--builtin", "http,otel")
		tg.run(t, "call") // one trace the program began, joined
		if n := ag.settled(t, 1, "tcagent_traces_joined_total", fmt.Sprintf(`pid="%d"`, tg.pid())); n != 1 {
			t.Errorf("tcagent_traces_joined_total %v, want 1", n)
		}
		ag.stop(t)
	})
}

package kerneltests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// printerProbes traces the printer fixture's Work; the signature serves the
// stripped builds.
const printerProbes = `
probes:
  - symbol: main.Work
    name: work
    attributes: [{key: i, from: arg0, type: int}]
    signature: "func(i int) int"
`

// spanLines parses a span stream: every line must be one span.
func spanLines(t *testing.T, stream string) []map[string]any {
	t.Helper()
	if stream == "" {
		return nil
	}
	var spans []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(stream, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["span_id"] == nil {
			t.Fatalf("a line of the span stream is not a span: %q (%v)", line, err)
		}
		spans = append(spans, m)
	}
	return spans
}

// checkWork checks the spans of `printer -print n`: one work span per
// call, with its argument.
func checkWork(t *testing.T, spans []map[string]any, n int) {
	t.Helper()
	seen := map[float64]bool{}
	for _, s := range spans {
		if s["name"] != "work" {
			t.Errorf("unexpected span %v", s["name"])
			continue
		}
		seen[s["attributes"].(map[string]any)["i"].(float64)] = true
	}
	if len(spans) != n || len(seen) != n {
		t.Errorf("%d work spans for %v, want %d, one per call", len(spans), seen, n)
	}
	for i := 0; i < n; i++ {
		if !seen[float64(i)] {
			t.Errorf("no span for Work(%d)", i)
		}
	}
}

// programLines is what `printer -print n` writes to one of its streams.
func programLines(prefix string, n int) []string {
	var ls []string
	for i := 0; i < n; i++ {
		ls = append(ls, fmt.Sprintf("%s %d", prefix, i))
	}
	return ls
}

// linesOf returns the lines of s that start with prefix and a space.
func linesOf(s, prefix string) []string {
	var ls []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			ls = append(ls, l)
		}
	}
	return ls
}

// TestCLIRunOutput: under `tcagent run --exporter jsonl`, spans and the
// program's own output never share a stream. Spans on stdout: the
// program's stdout goes to stderr, in its order, and every line of stdout
// is a span. With --output FILE the spans go there and the program keeps
// its stdout.
func TestCLIRunOutput(t *testing.T) {
	bin := tcagent(t)
	probesFile := writeFile(t, "p.yaml", printerProbes)
	const n = 5
	forEachBuildOf(t, "printer", func(t *testing.T, b build) {
		t.Run("stdout", func(t *testing.T) {
			cmd := exec.Command(bin, "run", "--probes", probesFile, "--builtin", "none", "--exporter", "jsonl", "--metrics-addr", "",
				"--", b.path, "-print", strconv.Itoa(n))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("tcagent run: %v\n%s", err, stderr.String())
			}
			checkWork(t, spanLines(t, stdout.String()), n)
			if got, want := linesOf(stderr.String(), "line"), programLines("line", n); !slicesEqual(got, want) {
				t.Errorf("the program's stdout on stderr: %q, want %q\nstderr:\n%s", got, want, stderr.String())
			}
			if got, want := linesOf(stderr.String(), "note"), programLines("note", n); !slicesEqual(got, want) {
				t.Errorf("the program's stderr: %q, want %q", got, want)
			}
		})
		t.Run("output-file", func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "spans.jsonl")
			if err := os.WriteFile(file, []byte("an earlier run\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "run", "--probes", probesFile, "--builtin", "none", "--exporter", "jsonl", "--metrics-addr", "",
				"--output", file, "--", b.path, "-print", strconv.Itoa(n))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("tcagent run: %v\n%s", err, stderr.String())
			}
			if got, want := stdout.String(), strings.Join(programLines("line", n), "\n")+"\n"; got != want {
				t.Errorf("stdout %q, want the program's own, %q", got, want)
			}
			if got, want := linesOf(stderr.String(), "note"), programLines("note", n); !slicesEqual(got, want) {
				t.Errorf("the program's stderr: %q, want %q", got, want)
			}
			if linesOf(stderr.String(), "line") != nil {
				t.Errorf("the program's stdout reached stderr: %s", stderr.String())
			}
			spans, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			checkWork(t, spanLines(t, string(spans)), n)
		})
	})
}

// TestCLIAttachOutputFile: attach --output FILE writes the spans there and
// nothing on stdout.
func TestCLIAttachOutputFile(t *testing.T) {
	b := newestOf(t, "printer")
	tg, line := startProcess(t, b.path, []string{"-serve"}, nil)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if !ok {
		t.Fatalf("printer said %q", line)
	}
	file := filepath.Join(t.TempDir(), "spans.jsonl")
	a := startCLI(t, []int{tg.pid()}, "--output", file)
	get(t, "http://"+addr+"/status/201")
	if spans := a.stop(t); len(spans) != 0 {
		t.Errorf("spans on stdout with --output: %v", spans)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	spans := spanLines(t, string(data))
	if len(spans) != 1 || spans[0]["kind"] != "server" || spans[0]["attributes"].(map[string]any)["http.response.status_code"] != 201.0 {
		t.Errorf("--output holds %s, want the one server span", data)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metricSum is the sum of the series of name on the endpoint at addr, 0
// while there are none.
func metricSum(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("bad sample %q", line)
			}
			sum += v
		}
	}
	return sum
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// TestCLIServerErrorType: a server span with a 5xx status has error.type
// the status code as a string, and so has the request-duration metric's
// error_type label; a 4xx is no server error.
func TestCLIServerErrorType(t *testing.T) {
	forEachBuildOf(t, "printer", func(t *testing.T, b build) {
		tg, line := startProcess(t, b.path, []string{"-serve"}, nil)
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
		if !ok {
			t.Fatalf("printer said %q", line)
		}
		a := startCLI(t, []int{tg.pid()})
		codes := []int{200, 404, 500, 503, 503}
		for _, code := range codes {
			if got := get(t, fmt.Sprintf("http://%s/status/%d", addr, code)); got != code {
				t.Fatalf("the server answered %d, want %d", got, code)
			}
		}
		const metric = "http_server_request_duration_seconds_count"
		waitFor(t, "five requests in the metric", func() bool { return metricSum(t, a.metrics, metric) == float64(len(codes)) })
		for _, c := range []struct {
			status, errType string
			want            float64
		}{{"200", "", 1}, {"404", "", 1}, {"500", "500", 1}, {"503", "503", 2}} {
			if got := a.metric(t, metric, `http_response_status_code="`+c.status+`"`, `error_type="`+c.errType+`"`); got != c.want {
				t.Errorf("%s{status %s, error_type %q} = %v, want %v", metric, c.status, c.errType, got, c.want)
			}
		}
		spans := a.stop(t)
		byPath := map[string][]map[string]any{}
		for _, s := range spans {
			if s["kind"] == "server" {
				p := s["attributes"].(map[string]any)["url.path"].(string)
				byPath[p] = append(byPath[p], s)
			}
		}
		for _, code := range []int{200, 404, 500, 503} {
			ss := byPath[fmt.Sprintf("/status/%d", code)]
			if len(ss) == 0 {
				t.Errorf("no server span for %d: %v", code, byPath)
				continue
			}
			for _, s := range ss {
				a := s["attributes"].(map[string]any)
				status := s["status"].(map[string]any)["code"]
				if a["http.response.status_code"] != float64(code) {
					t.Errorf("%d: http.response.status_code %v", code, a["http.response.status_code"])
				}
				if code >= 500 {
					if a["error.type"] != strconv.Itoa(code) || status != "error" {
						t.Errorf("%d: error.type %v, status %v; want %q and error", code, a["error.type"], status, strconv.Itoa(code))
					}
				} else if et, ok := a["error.type"]; ok || status == "error" {
					t.Errorf("%d: error.type %v, status %v; want none and not an error", code, et, status)
				}
			}
		}
	})
}

// TestCLIThreadPID: a thread id given as --pid is refused with a line that
// names its process (and nothing else: no "attached"), exit 1, and the
// process goes on serving.
func TestCLIThreadPID(t *testing.T) {
	b := newestOf(t, "printer")
	tg, line := startProcess(t, b.path, []string{"-serve"}, nil)
	addr, _ := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	pid := tg.pid()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	tid := 0
	for _, e := range tasks {
		if n, _ := strconv.Atoi(e.Name()); n != pid {
			tid = n
			break
		}
	}
	if tid == 0 {
		t.Fatal("the Go program has a single thread")
	}
	out, err := exec.Command(tcagent(t), "attach", "--pid", strconv.Itoa(tid), "--metrics-addr", "").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("attach --pid of a thread: %v, want exit status 1", err)
	}
	want := fmt.Sprintf("tcagent: --pid %d is a thread of process %d: give --pid %d\n", tid, pid, pid)
	if string(out) != want {
		t.Errorf("said %q, want %q", out, want)
	}
	if got := get(t, "http://"+addr+"/status/200"); got != 200 {
		t.Errorf("the program answered %d after the refusal", got)
	}
}

// TestCLISamplerEnvRefused: a bad OTEL_TRACES_SAMPLER or ratio is refused
// as --sampler's is, one line and exit 1, before anything is attached (no
// "attached" line); under run, before the program runs (it would print).
func TestCLISamplerEnvRefused(t *testing.T) {
	b := newestOf(t, "printer")
	tg, _ := startProcess(t, b.path, []string{"-serve"}, nil)
	probesFile := writeFile(t, "p.yaml", printerProbes)
	const names = "want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
	attach := func(extra ...string) []string {
		return append([]string{"attach", "--pid", strconv.Itoa(tg.pid()), "--probes", probesFile, "--exporter", "jsonl", "--metrics-addr", ""}, extra...)
	}
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"OTEL_TRACES_SAMPLER=bogus"}, attach(), `OTEL_TRACES_SAMPLER "bogus": ` + names},
		{nil, attach("--sampler", "bogus"), `--sampler "bogus": ` + names},
		{[]string{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=2"}, attach(),
			`OTEL_TRACES_SAMPLER_ARG "2" (for traceidratio): want a ratio from 0 to 1`},
		{[]string{"OTEL_TRACES_SAMPLER=bogus"}, []string{"run", "--probes", probesFile, "--exporter", "jsonl", "--metrics-addr", "",
			"--", b.path, "-print", "1"}, `OTEL_TRACES_SAMPLER "bogus": ` + names},
	} {
		args := c.args
		cmd := exec.Command(tcagent(t), args...)
		cmd.Env = append(os.Environ(), c.env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%v %v: %v, want exit status 1", c.env, c.args, err)
		}
		if got, want := stderr.String(), "tcagent: "+c.want+"\n"; got != want {
			t.Errorf("%v %v: said %q, want %q", c.env, c.args, got, want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v %v: stdout %q: the program ran, or spans were written", c.env, c.args, stdout.String())
		}
	}
}

package kerneltests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/tcagent/tcagent/probes"
)

var (
	cliOnce sync.Once
	cliErr  error
)

// tcagent builds the CLI once.
func tcagent(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		agentBin = filepath.Join(workDir, "tcagent")
		cliErr = goBuild("..", agentBin, "local", "./cmd/tcagent")
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return agentBin
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCLIJSONLines runs `tcagent attach --exporter jsonl` and checks the
// readiness line, the exact JSON-lines format, and a clean exit on SIGINT.
func TestCLIJSONLines(t *testing.T) {
	bin := tcagent(t)
	b := newest(t, false) // newest Go, with DWARF
	tg := startTarget(t, b.path)
	probesFile := writeFile(t, "p.yaml", `
probes:
  - symbol: main.Fail
    name: fail
    kind: client
    capture_error: true
    attributes: [{key: mode, from: arg0, type: int}]
  - {symbol: main.Outer, name: outer}
  - {symbol: main.Middle, name: middle}
`)
	cmd := exec.Command(bin, "attach", "--pid", strconv.Itoa(tg.pid()), "--probes", probesFile, "--exporter", "jsonl", "--service-name", "fixture-svc")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs := bufio.NewScanner(stderr)
	ready := make(chan string, 1)
	go func() {
		for logs.Scan() {
			if strings.Contains(logs.Text(), "attached") {
				ready <- logs.Text()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("no 'attached' line on stderr within 20s")
	}
	tg.run(t, "errors")
	tg.run(t, "nested")
	// The calls have returned; on SIGINT the agent detaches and drains what
	// the ring buffer holds, so no wait for its poll is needed.
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tcagent exited with %v, want 0", err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("got %d lines, want 6 (4 fail, middle, outer):\n%s", len(lines), stdout.String())
	}
	wantKeys := []string{"name", "trace_id", "span_id", "parent_span_id", "kind", "start_time_unix_nano",
		"end_time_unix_nano", "status", "attributes", "events", "resource"}
	spans := map[string][]map[string]any{}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		if len(m) != len(wantKeys) {
			t.Errorf("line has keys %v, want exactly %v", keys(m), wantKeys)
		}
		for _, k := range wantKeys {
			if _, ok := m[k]; !ok {
				t.Errorf("line lacks %q: %s", k, line)
			}
		}
		if len(m["trace_id"].(string)) != 32 || len(m["span_id"].(string)) != 16 {
			t.Errorf("bad ids in %s", line)
		}
		if m["start_time_unix_nano"].(float64) > m["end_time_unix_nano"].(float64) {
			t.Errorf("ends before it starts: %s", line)
		}
		res := m["resource"].(map[string]any)
		if res["service.name"] != "fixture-svc" || res["process.pid"] != float64(tg.pid()) || res["process.runtime.version"] == "" {
			t.Errorf("resource %v", res)
		}
		spans[m["name"].(string)] = append(spans[m["name"].(string)], m)
	}
	fails := spans["fail"]
	if len(fails) != 4 {
		t.Fatalf("got %d fail spans", len(fails))
	}
	first := fails[0]
	if first["kind"] != "client" || first["parent_span_id"] != "" {
		t.Errorf("fail span kind %v parent %q", first["kind"], first["parent_span_id"])
	}
	st := first["status"].(map[string]any)
	if st["code"] != "error" || st["message"] != "plain failure" {
		t.Errorf("status %v", st)
	}
	ev := first["events"].([]any)
	if len(ev) != 1 {
		t.Fatalf("events %v, want one exception", ev)
	}
	e := ev[0].(map[string]any)
	ea := e["attributes"].(map[string]any)
	if e["name"] != "exception" || ea["exception.type"] != "*errors.errorString" || ea["exception.message"] != "plain failure" {
		t.Errorf("exception event %v", e)
	}
	if ok := fails[2]["status"].(map[string]any); ok["code"] != "unset" || len(fails[2]["events"].([]any)) != 0 {
		t.Errorf("successful call: status %v events %v", ok, fails[2]["events"])
	}
	if fails[0]["attributes"].(map[string]any)["mode"] != float64(0) {
		t.Errorf("attributes %v", fails[0]["attributes"])
	}
	middle, outer := spans["middle"][0], spans["outer"][0]
	if middle["parent_span_id"] != outer["span_id"] || middle["trace_id"] != outer["trace_id"] {
		t.Errorf("middle is not outer's child: %v %v", middle, outer)
	}
	// The target was not harmed.
	tg.run(t, "nested")
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

// TestCLIErrors checks that bad input gets one clear line, exit status 1,
// and leaves the target running.
func TestCLIErrors(t *testing.T) {
	bin := tcagent(t)
	b := newest(t, false)
	tg := startTarget(t, b.path)
	stripped := startTarget(t, newest(t, true).path)
	pid := strconv.Itoa(tg.pid())
	good := writeFile(t, "good.yaml", "probes:\n  - {symbol: main.Outer}\n")
	// t.TempDir is private to root; nobody must read this one.
	readable := filepath.Join(workDir, "readable.yaml")
	if err := os.WriteFile(readable, []byte("probes:\n  - {symbol: main.Outer}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notGo := exec.Command("sleep", "60")
	if err := notGo.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { notGo.Process.Kill(); notGo.Wait() }()

	cases := []struct {
		name string
		args []string
		as   uint32 // run as this uid (0: root)
		want string
	}{
		{"no such pid", []string{"attach", "--pid", "999999999", "--probes", good}, 0, "no such process: 999999999"},
		{"not a Go binary", []string{"attach", "--pid", strconv.Itoa(notGo.Process.Pid), "--probes", good}, 0, "not a Go binary"},
		{"unknown symbol", []string{"attach", "--pid", pid, "--probes", writeFile(t, "u.yaml", "probes:\n  - {symbol: main.Outr}\n")}, 0,
			"unknown symbol main.Outr"},
		{"suggestion", []string{"attach", "--pid", pid, "--probes", writeFile(t, "s.yaml", "probes:\n  - {symbol: main.Outr}\n")}, 0,
			"did you mean main.Outer"},
		{"invalid YAML", []string{"attach", "--pid", pid, "--probes", writeFile(t, "i.yaml", "probes: [\n")}, 0, "invalid YAML"},
		{"unknown key", []string{"attach", "--pid", pid, "--probes", writeFile(t, "k.yaml", "probes:\n  - {symbol: main.Outer, colour: red}\n")}, 0,
			`k.yaml line 2: unknown key "colour" in probe "main.Outer"`},
		{"unsupported argument type", []string{"attach", "--pid", pid, "--probes",
			writeFile(t, "t.yaml", "probes:\n  - symbol: main.Types\n    attributes: [{key: s, from: arg3, type: int}]\n")}, 0,
			"arg3 is string (string), which cannot be captured as int"},
		{"unsupported attribute type", []string{"attach", "--pid", pid, "--probes",
			writeFile(t, "f.yaml", "probes:\n  - symbol: main.Types\n    attributes: [{key: s, from: arg3, type: float}]\n")}, 0,
			`type "float": want int, uint, bool or string`},
		{"stripped without signature", []string{"attach", "--pid", strconv.Itoa(stripped.pid()), "--probes",
			writeFile(t, "n.yaml", "probes:\n  - symbol: main.Types\n    attributes: [{key: i, from: arg0, type: int}]\n")}, 0,
			"has no DWARF: add `signature:`"},
		{"missing probes file", []string{"attach", "--pid", pid, "--probes", "/nonexistent.yaml"}, 0, "no such file"},
		{"insufficient privilege", []string{"attach", "--pid", pid, "--probes", readable}, 65534, "insufficient privilege"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			if c.as != 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.as, Gid: c.as}}
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1 (the README's promise for bad input); stderr: %s", err, stderr.String())
			}
			out := strings.TrimRight(stderr.String(), "\n")
			if strings.Count(out, "\n") != 0 {
				t.Errorf("error is not one line:\n%s", out)
			}
			if !strings.HasPrefix(out, "tcagent: ") || !strings.Contains(out, c.want) {
				t.Errorf("stderr %q, want it to contain %q", out, c.want)
			}
		})
	}
	// The targets are untouched and still work.
	tg.run(t, "nested")
	stripped.run(t, "nested")
}

// TestCLIRun starts the fixture under `tcagent run`: calls made right after
// the program starts are traced, including on goroutines, and tcagent exits
// with the program's status.
func TestCLIRun(t *testing.T) {
	bin := tcagent(t)
	probesFile := writeFile(t, "p.yaml", `
probes:
  - {symbol: main.Outer, name: outer}
  - {symbol: main.Inner, name: inner}
  - {symbol: main.Parent, name: parent}
  - {symbol: main.Child, name: child}
`)
	// Every build, stripped and PIE too: these probes capture nothing, so
	// they need no signature.
	for _, b := range fixtures(t) {
		t.Run(b.name, func(t *testing.T) {
			cmd := exec.Command(bin, "run", "--probes", probesFile, "--exporter", "jsonl", "--", b.path, "-run", "nested", "fanout", "exit3")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("tcagent run exited with %v, want the program's status 3; stderr:\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "attached") {
				t.Errorf("no 'attached' line: %s", stderr.String())
			}
			byName := map[string][]map[string]any{}
			for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("not JSON: %q", line)
				}
				byName[m["name"].(string)] = append(byName[m["name"].(string)], m)
			}
			if len(byName["outer"]) != 1 || len(byName["inner"]) != 1 || len(byName["parent"]) != 1 || len(byName["child"]) != 3 {
				t.Fatalf("spans: %v", stdout.String())
			}
			// Inner is a child of Outer: Middle is not probed.
			if byName["inner"][0]["parent_span_id"] != byName["outer"][0]["span_id"] {
				t.Error("inner is not outer's child")
			}
			for _, c := range byName["child"] {
				if c["parent_span_id"] != byName["parent"][0]["span_id"] {
					t.Error("a child on a goroutine is not parent's child")
				}
				if r := c["attributes"].(map[string]any)["tcagent.end_reason"]; r != nil {
					t.Errorf("child ended by the agent: %v", r)
				}
			}
		})
	}
}

// TestCLIInspect runs `tcagent inspect` on a binary path and on a pid, for
// a build with DWARF, a stripped one and a stripped PIE: what it says of the
// binary, the runtime offsets (the same the agent uses), the built-in sets
// with where each offset comes from, the modules, and a function found by
// its exact full name with its probe placement.
func TestCLIInspect(t *testing.T) {
	bin := tcagent(t)
	for _, b := range fixtures(t) {
		if b.release != toolchains[len(toolchains)-1].release {
			continue // the newest Go's three builds are enough here
		}
		t.Run(b.name, func(t *testing.T) {
			pb, err := probes.Open(b.path)
			if err != nil {
				t.Fatal(err)
			}
			rt, err := pb.Runtime()
			pb.Close()
			if err != nil {
				t.Fatal(err)
			}
			tg := startTarget(t, b.path)
			for _, how := range [][]string{{b.path}, {"--pid", strconv.Itoa(tg.pid())}} {
				cmd := exec.Command(bin, append([]string{"inspect", "--symbol", "main.Types"}, how...)...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("inspect %v: %v\n%s", how, err, stderr.String())
				}
				lines := strings.Split(string(out), "\n")
				has := func(prefix string) bool {
					for _, l := range lines {
						if strings.HasPrefix(l, prefix) {
							return true
						}
					}
					return false
				}
				source, offsetFrom := "DWARF", "DWARF"
				if b.stripped {
					source, offsetFrom = "table", "table ("+b.release+")"
				}
				for _, want := range []string{
					"go:         " + b.release + ".",
					"main:       fixture ",
					fmt.Sprintf("stripped:   %v", b.stripped),
					fmt.Sprintf("dwarf:      %v", !b.stripped),
					fmt.Sprintf("pie:        %v", b.pie),
					fmt.Sprintf("runtime:    g.goid at %d, g.stack.hi at %d (from %s)", rt.GoidOffset, rt.StackHiOffset, source),
					"builtin http: net/http.serverHandler.ServeHTTP, net/http.(*Transport).roundTrip",
					"  offset net/http.Request.Method from " + offsetFrom,
					"builtin redis: skipped: the binary does not use it",
					"modules:    1",
					"  github.com/lib/pq v1.10.9",
					`symbols matching "main.Types": 1`,
					"  main.Types  0x",
				} {
					if !has(want) {
						t.Errorf("inspect %v: no line beginning %q:\n%s", how, want, out)
					}
				}
				for _, l := range lines {
					if strings.HasPrefix(l, "  main.Types  0x") {
						if !strings.Contains(l, " rets=1 stackcheck=true") {
							t.Errorf("main.Types placement: %q, want one RET and the stack check", l)
						}
						if sig := "func(i int, u uint, b bool, s string, small int8)"; !b.stripped && !strings.Contains(l, sig) {
							t.Errorf("main.Types: %q lacks its DWARF signature %s", l, sig)
						}
					}
				}
			}
		})
	}
	// Not a Go binary: one line, status 1.
	cmd := exec.Command(bin, "inspect", "/bin/sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 || !strings.Contains(stderr.String(), "not a Go binary") {
		t.Errorf("inspect /bin/sh: %v, stderr %q; want one line saying not a Go binary, status 1", err, stderr.String())
	}
}

// TestCLIStdoutTree runs `tcagent attach --exporter stdout`: each finished
// trace is drawn as a tree, children indented under their parents.
func TestCLIStdoutTree(t *testing.T) {
	b := newest(t, false)
	tg := startTarget(t, b.path)
	probesFile := writeFile(t, "p.yaml", `
probes:
  - {symbol: main.Outer, name: outer}
  - {symbol: main.Middle, name: middle}
  - {symbol: main.Inner, name: inner}
`)
	a := startAgent(t, tg.pid(), probesFile, nil, "--exporter", "stdout")
	tg.run(t, "nested")
	tg.run(t, "nested")
	a.stop(t)
	tree := regexp.MustCompile(`^trace [0-9a-f]{32}\n└─ outer \S+\n   └─ middle \S+\n      └─ inner \S+\n$`)
	out := a.stdout.String()
	n := 0
	for _, part := range regexp.MustCompile(`(?m)^trace `).Split(out, -1)[1:] {
		if !tree.MatchString("trace " + part) {
			t.Errorf("trace drawn as:\n%s", "trace "+part)
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d traces drawn, want 2:\n%s", n, out)
	}
}

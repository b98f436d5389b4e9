// Package kerneltests loads tcagent's real eBPF programs into this kernel and
// attaches them to fixture Go programs that the tests build themselves, with
// several Go releases, with and without symbols and DWARF.
package kerneltests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/probes"
)

// build is one fixture binary.
type build struct {
	name     string // e.g. go1.22-stripped
	path     string
	release  string
	stripped bool // no symbols, no DWARF
	pie      bool // position-independent
}

// variants are how each fixture is built: normal; stripped (-s -w: no
// symbol table, no DWARF); and a stripped PIE (for the main fixture with
// every toolchain, for the others with the newest), as
// distributions build Go programs (type data then sits in relocated
// .data.rel.ro and the binary is loaded at a bias).
var variants = []struct {
	suffix   string
	args     []string
	stripped bool
	pie      bool
}{
	{"", nil, false, false},
	{"-stripped", []string{"-ldflags=-s -w"}, true, false},
	{"-pie-stripped", []string{"-buildmode=pie", "-ldflags=-s -w"}, true, true},
}

// toolchains are the Go releases fixtures are built with: the oldest the
// tests cover, the local Go and the newest. GOTOOLCHAIN fetches the others
// through the module proxy.
var toolchains = []struct{ release, toolchain string }{
	{"go1.22", "go1.22.12"},
	{"go1.26", "local"},
	{"go1.27", "go1.27.3"},
}

var (
	buildsMu sync.Mutex
	builds   = map[string][]build{}
	workDir  string
	agentBin string
)

func TestMain(m *testing.M) {
	// Not root: fail, never pass. A run that skipped every kernel test
	// would report ok for a tracer that was never loaded.
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "kernel-tests: FAIL: not root: these tests load eBPF programs into the kernel; run them as root (make test)")
		os.Exit(1)
	}
	var err error
	workDir, err = os.MkdirTemp("", "tcagent-kernel-tests-")
	if err == nil {
		// The privilege test runs the CLI as nobody.
		err = os.Chmod(workDir, 0o755)
	}
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(workDir)
	os.Exit(code)
}

// goBuild builds a fixture (or the CLI) into out. A guest kernel with no Go
// toolchain (scripts/test-vm.sh) runs the tests on binaries its host built:
// with TCAGENT_FIXTURES set to a directory, the binary there under out's
// name is taken, and none is built. The host run that builds them (the
// control, which runs the same tests first) saves each where
// TCAGENT_FIXTURES_SAVE says, built for each guest's architecture:
// "amd64=DIR arm64=DIR". One control run serves every guest: for its own
// architecture it saves the binary it runs, for another it builds again.
func goBuild(dir, out, toolchain string, args ...string) error {
	if d := os.Getenv("TCAGENT_FIXTURES"); d != "" {
		if err := copyFile(filepath.Join(d, filepath.Base(out)), out); err != nil {
			return fmt.Errorf("prebuilt fixture (TCAGENT_FIXTURES): %w", err)
		}
		return nil
	}
	saves, err := fixtureSaves()
	if err != nil {
		return err
	}
	if err := goBuildFor(runtime.GOARCH, dir, out, toolchain, args...); err != nil {
		return err
	}
	for _, sv := range saves {
		saved := filepath.Join(sv.dir, filepath.Base(out))
		if sv.goarch != runtime.GOARCH {
			if err := goBuildFor(sv.goarch, dir, saved, toolchain, args...); err != nil {
				return err
			}
		} else if err := copyFile(out, saved); err != nil {
			return fmt.Errorf("save %s: %w", saved, err)
		}
	}
	return nil
}

// fixtureSave is where the control run saves the fixtures built for one
// guest architecture.
type fixtureSave struct{ goarch, dir string }

// fixtureSaves reads TCAGENT_FIXTURES_SAVE ("amd64=DIR arm64=DIR").
func fixtureSaves() ([]fixtureSave, error) {
	var saves []fixtureSave
	for _, f := range strings.Fields(os.Getenv("TCAGENT_FIXTURES_SAVE")) {
		goarch, dir, ok := strings.Cut(f, "=")
		if !ok || goarch == "" || dir == "" {
			return nil, fmt.Errorf("TCAGENT_FIXTURES_SAVE: %q is not GOARCH=DIR", f)
		}
		saves = append(saves, fixtureSave{goarch, dir})
	}
	return saves, nil
}

// goBuildFor runs go build for the architecture goarch.
func goBuildFor(goarch, dir, out, toolchain string, args ...string) error {
	cmd := exec.Command("go", append([]string{"build", "-o", out}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+toolchain, "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s with %s: %v\n%s", out, goarch, toolchain, err, b)
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// fixtures builds (once) the main fixture with every toolchain, normal and
// stripped (-s -w: no symbol table, no DWARF).
func fixtures(t *testing.T) []build {
	t.Helper()
	return fixturesOf(t, "fixture")
}

// fixturesOf builds (once) the fixture program in testdata/dir.
func fixturesOf(t *testing.T, dir string) []build {
	t.Helper()
	buildsMu.Lock()
	defer buildsMu.Unlock()
	if bs, ok := builds[dir]; ok {
		return bs
	}
	src, _ := filepath.Abs(filepath.Join("testdata", dir))
	kept, err := keptBuilds()
	if err != nil {
		t.Fatal(err)
	}
	var bs []build
	for _, tc := range toolchains {
		for _, v := range variants {
			// PIE: the main fixture with every toolchain; the others with
			// the newest, once each (their relocated type data is what PIE
			// changes, and a release more would double their suites' time).
			if v.pie && dir != "fixture" && tc.release != toolchains[len(toolchains)-1].release {
				continue
			}
			b := build{name: tc.release + v.suffix, release: tc.release, stripped: v.stripped, pie: v.pie}
			if kept != nil && !kept[b.name] {
				continue
			}
			b.path = filepath.Join(workDir, dir+"-"+b.name)
			if err := goBuild(src, b.path, tc.toolchain, append(append([]string{}, v.args...), ".")...); err != nil {
				t.Fatal(err)
			}
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		t.Fatalf("TCAGENT_BUILDS=%s keeps no build of testdata/%s", os.Getenv("TCAGENT_BUILDS"), dir)
	}
	builds[dir] = bs
	return bs
}

// keptBuilds reads TCAGENT_BUILDS, a comma-separated list of build names
// (go1.22,go1.27-pie-stripped): every fixture is then built, and every test
// run, only as those. scripts/test-vm.sh sets it: its guests run under
// emulation, about 20 times slower, and the whole release matrix is the
// host suite's to cover. Unset, every build is kept (nil). A name that is
// no build fails, rather than leave a test with nothing to run.
func keptBuilds() (map[string]bool, error) {
	list := os.Getenv("TCAGENT_BUILDS")
	if list == "" {
		return nil, nil
	}
	known := map[string]bool{}
	var names []string
	for _, tc := range toolchains {
		for _, v := range variants {
			known[tc.release+v.suffix] = true
			names = append(names, tc.release+v.suffix)
		}
	}
	kept := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		if !known[name] {
			return nil, fmt.Errorf("TCAGENT_BUILDS: no build is named %q (the builds: %s)", name, strings.Join(names, ", "))
		}
		kept[name] = true
	}
	return kept, nil
}

// moduleRelease is a build of a fixture against releases of the modules it
// links: by a Go release (toolchain), with the go.mod requiring them
// (modfile) and more build flags (args), named by label; normal and
// stripped, and a stripped PIE too when pie is set.
type moduleRelease struct {
	release, toolchain, modfile, label string
	args                               []string
	pie                                bool
}

// moduleFixture is a build of a fixture and the index of the moduleRelease
// it is a build of.
type moduleFixture struct {
	build
	of int
}

// moduleFixtures builds (once) the fixture in testdata/dir as each of rs says.
func moduleFixtures(t *testing.T, dir string, rs []moduleRelease) []moduleFixture {
	t.Helper()
	buildsMu.Lock()
	defer buildsMu.Unlock()
	src, _ := filepath.Abs(filepath.Join("testdata", dir))
	var out []moduleFixture
	for i, r := range rs {
		for _, v := range variants {
			if v.pie && !r.pie {
				continue
			}
			b := build{name: r.release + "-" + r.label + v.suffix, release: r.release, stripped: v.stripped, pie: v.pie}
			b.path = filepath.Join(workDir, dir+"-"+b.name)
			if _, done := builds[b.path]; !done {
				args := append(append(append([]string{"-modfile=" + r.modfile}, r.args...), v.args...), ".")
				if err := goBuild(src, b.path, r.toolchain, args...); err != nil {
					t.Fatal(err)
				}
				builds[b.path] = nil
			}
			out = append(out, moduleFixture{b, i})
		}
	}
	return out
}

// oldest builds (once) the Go 1.21 fixture, stripped: the oldest release
// supported, with nothing but the tables to go on.
func oldest(t *testing.T) string {
	t.Helper()
	buildsMu.Lock()
	defer buildsMu.Unlock()
	path := filepath.Join(workDir, "go121-stripped")
	if _, ok := builds["go121"]; !ok {
		src, _ := filepath.Abs("testdata/go121")
		if err := goBuild(src, path, "go1.21.13", "-ldflags=-s -w", "."); err != nil {
			t.Fatal(err)
		}
		builds["go121"] = nil
	}
	return path
}

// newest returns the main fixture built by the newest Go, stripped or not
// (not PIE).
func newest(t *testing.T, stripped bool) build {
	t.Helper()
	bs := fixtures(t)
	for i := len(bs) - 1; i >= 0; i-- {
		if bs[i].release == toolchains[len(toolchains)-1].release && bs[i].stripped == stripped && !bs[i].pie {
			return bs[i]
		}
	}
	t.Fatalf("the newest Go's build (stripped %v, not PIE) is not among the builds (TCAGENT_BUILDS=%s)", stripped, os.Getenv("TCAGENT_BUILDS"))
	return build{}
}

// forEachBuild runs f as a subtest for every build of the main fixture.
func forEachBuild(t *testing.T, f func(t *testing.T, b build)) {
	forEachBuildOf(t, "fixture", f)
}

// forEachBuildOf runs f as a subtest for every build of a fixture.
func forEachBuildOf(t *testing.T, dir string, f func(t *testing.T, b build)) {
	for _, b := range fixturesOf(t, dir) {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// target is a running fixture.
type target struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

func startTarget(t *testing.T, path string, env ...string) *target {
	t.Helper()
	tg, line := startProcess(t, path, nil, env)
	if line != "ready\n" {
		t.Fatalf("fixture did not start: %q", line)
	}
	return tg
}

// startProcess starts the fixture at path with args and env, and returns
// it with the first line it printed.
func startProcess(t *testing.T, path string, args, env []string) (*target, string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(out)}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, _ := tg.stdout.ReadString('\n')
	return tg, line
}

func (tg *target) pid() int { return tg.cmd.Process.Pid }

// run sends a command and waits until the fixture finished it.
func (tg *target) run(t *testing.T, cmd string) {
	t.Helper()
	if _, err := fmt.Fprintln(tg.stdin, cmd); err != nil {
		t.Fatal(err)
	}
	line, err := tg.stdout.ReadString('\n')
	if err != nil || line != "ok "+cmd+"\n" {
		t.Fatalf("fixture answered %q, %v to %s", line, err, cmd)
	}
}

// session is an in-process agent attached to a target.
type session struct {
	s      *agent.Session
	rec    *tracetest.SpanRecorder
	cancel context.CancelFunc
	done   chan error
}

// fixtureProbes writes every probe with a signature, so that the same file
// serves builds with DWARF and stripped ones.
func attach(t *testing.T, pid int, yaml string) *session {
	t.Helper()
	return attachWith(t, pid, yaml, nil)
}

// attachWith lets the test adjust the agent's configuration.
func attachWith(t *testing.T, pid int, yaml string, adjust func(*agent.Config)) *session {
	t.Helper()
	var specs []probes.Spec
	if yaml != "" {
		var err error
		if specs, err = probes.Parse([]byte(yaml)); err != nil {
			t.Fatal(err)
		}
	}
	rec := tracetest.NewSpanRecorder()
	// Built-in sets only where a test asks for them.
	cfg := agent.Config{ImageConfig: agent.ImageConfig{Specs: specs, PollInterval: 10 * time.Millisecond, Builtin: []string{}},
		SessionConfig: agent.SessionConfig{PID: pid, Processor: rec}}
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := agent.Attach(cfg)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{s: s, rec: rec, cancel: cancel, done: make(chan error, 1)}
	go func() { ss.done <- s.Run(ctx) }()
	t.Cleanup(func() { ss.stop(t) })
	return ss
}

// stop detaches (draining every event) and returns the ended spans.
func (ss *session) stop(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	if ss.cancel == nil {
		return ss.rec.Ended()
	}
	ss.cancel()
	ss.cancel = nil
	select {
	case err := <-ss.done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop within 10s")
	}
	if err := ss.s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	return ss.rec.Ended()
}

func attrs(s sdktrace.ReadOnlySpan) map[string]any {
	m := map[string]any{}
	for _, a := range s.Attributes() {
		m[string(a.Key)] = a.Value.AsInterface()
	}
	return m
}

func named(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func spanNames(spans []sdktrace.ReadOnlySpan) string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name())
	}
	return strings.Join(n, ",")
}

package kerneltests

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tcagent/tcagent/probes"
)

// genericToolchains build the generic fixture: DWARF by Go 1.26 and older
// leaves the dictionary out, Go 1.27 lists it (after a method's receiver).
var genericToolchains = []struct{ release, toolchain string }{
	{"go1.22", "go1.22.12"},
	{"go1.26", "local"},
	{"go1.27", "go1.27.3"},
}

var (
	genericOnce   sync.Once
	genericBuilds []build
	genericErr    error
)

// genericFixtures builds testdata/generic with each toolchain, normal,
// stripped and stripped PIE (the harness's variants).
func genericFixtures(t *testing.T) []build {
	t.Helper()
	genericOnce.Do(func() {
		src, _ := filepath.Abs("testdata/generic")
		for _, tc := range genericToolchains {
			for _, v := range variants {
				b := build{name: tc.release + v.suffix, release: tc.release, stripped: v.stripped, pie: v.pie}
				b.path = filepath.Join(workDir, "generic-"+b.name)
				if genericErr = goBuild(src, b.path, tc.toolchain, append(append([]string{}, v.args...), ".")...); genericErr != nil {
					return
				}
				genericBuilds = append(genericBuilds, b)
			}
		}
	})
	if genericErr != nil {
		t.Fatal(genericErr)
	}
	return genericBuilds
}

// genericProbes names instantiations both ways (the binary's shape names
// and the user's type arguments) and carries signatures, which stripped
// builds need and builds with DWARF must agree with.
const genericProbes = `
probes:
  - symbol: main.Label[int]
    name: label.int
    attributes:
      - {key: key, from: arg0, type: string}
      - {key: v, from: arg1, type: int}
      - {key: n, from: arg2, type: int}
      - {key: r0, from: result0, type: int}
      - {key: r1, from: result1, type: string}
    signature: "func(key string, v int, n int) (int, string)"
  - symbol: main.Label[go.shape.string]
    name: label.string
    attributes:
      - {key: key, from: arg0, type: string}
      - {key: v, from: arg1, type: string}
      - {key: n, from: arg2, type: int}
      - {key: r0, from: result0, type: string}
      - {key: r1, from: result1, type: string}
    signature: "func(key string, v string, n int) (string, string)"
  - symbol: main.Label[*main.Item]
    name: label.ptr
    attributes:
      - {key: key, from: arg0, type: string}
      - {key: v, from: arg1, type: uint}
      - {key: n, from: arg2, type: int}
      - {key: r0, from: result0, type: uint}
      - {key: r1, from: result1, type: string}
    signature: "func(key string, v *Item, n int) (*Item, string)"
  - symbol: main.(*Stack[int]).Push
    name: push.int
    attributes:
      - {key: v, from: arg1, type: int}
      - {key: depth, from: result0, type: int}
    signature: "func(s *Stack[int], v int) int"
  - symbol: main.(*Stack[go.shape.string]).Top
    name: top.string
    attributes:
      - {key: name, from: arg1, type: string}
      - {key: r0, from: result0, type: string}
      - {key: r1, from: result1, type: string}
    signature: "func(s *Stack[string], name string) (string, string)"
  - symbol: main.Pair[string, int]
    name: pair
    attributes:
      - {key: k, from: arg0, type: string}
      - {key: v, from: arg1, type: int}
      - {key: r0, from: result0, type: int}
    signature: "func(k string, v int) int"
  - symbol: main.(*meta).Status
    name: status
    attributes:
      - {key: code, from: result0, type: int}
    signature: "func(m *meta) int"
`

// TestGenericProbes captures arguments and results of shape instantiations
// (a function with three shapes, methods of a generic type, two type
// parameters) and the result of an inlinable method, on every build.
func TestGenericProbes(t *testing.T) {
	for _, b := range genericFixtures(t) {
		t.Run(b.name, func(t *testing.T) {
			tg := startTarget(t, b.path)
			// The runtime's offsets in a stripped binary come from the
			// offsets table: a release it does not have yet is refused
			// before any probe, and this build waits for it.
			bin, err := probes.Open(b.path)
			if err != nil {
				t.Fatal(err)
			}
			_, rerr := bin.Runtime()
			bin.Close()
			if rerr != nil && b.stripped && strings.Contains(rerr.Error(), "offsets table") {
				t.Skipf("%v", rerr)
			}
			ss := attach(t, tg.pid(), genericProbes)
			tg.run(t, "run")
			spans := ss.stop(t)

			one := func(name string) map[string]any {
				t.Helper()
				s := named(spans, name)
				if len(s) != 1 {
					t.Fatalf("%d %s spans, want 1 (spans: %s)", len(s), name, spanNames(spans))
				}
				return attrs(s[0])
			}
			same := func(name string, got map[string]any, want map[string]any) {
				t.Helper()
				for k, w := range want {
					if got[k] != w {
						t.Errorf("%s: %s = %#v, want %#v (all: %v)", name, k, got[k], w, got)
					}
				}
			}
			same("label.int", one("label.int"), map[string]any{"key": "count", "v": int64(42), "n": int64(7), "r0": int64(42), "r1": "count#7"})
			same("label.string", one("label.string"), map[string]any{"key": "name", "v": "gopher", "n": int64(8), "r0": "gopher", "r1": "name#8"})
			ptr := one("label.ptr")
			same("label.ptr", ptr, map[string]any{"key": "item", "n": int64(9), "r1": "item#9"})
			if ptr["v"] == int64(0) || ptr["v"] != ptr["r0"] {
				t.Errorf("label.ptr: the pointer passed (%v) is not the one returned (%v)", ptr["v"], ptr["r0"])
			}
			same("top.string", one("top.string"), map[string]any{"name": "strs", "r0": "strs", "r1": "a"})
			same("pair", one("pair"), map[string]any{"k": "k", "v": int64(3), "r0": int64(2)})

			var pushes []string
			for _, s := range named(spans, "push.int") {
				a := attrs(s)
				pushes = append(pushes, strconv.FormatInt(a["v"].(int64), 10)+"->"+strconv.FormatInt(a["depth"].(int64), 10))
			}
			sort.Strings(pushes)
			if strings.Join(pushes, " ") != "11->1 12->2" {
				t.Errorf("push.int: %v, want 11->1 12->2", pushes)
			}
			// Status is inlined where it is called directly; the interface
			// calls reach the out-of-line copy: once for 503, once for the
			// zero status (200).
			// A named type argument maps to its shape through DWARF; a
			// stripped build cannot tell (TestGenericRefusals).
			if !b.stripped {
				ss := attach(t, tg.pid(), `
probes:
  - symbol: main.Label[main.Code]
    name: label.code
    attributes:
      - {key: key, from: arg0, type: string}
      - {key: v, from: arg1, type: int}
      - {key: r0, from: result0, type: int}
      - {key: r1, from: result1, type: string}
`)
				tg.run(t, "run")
				code := named(ss.stop(t), "label.code")
				if len(code) != 1 {
					t.Fatalf("%d label.code spans, want 1", len(code))
				}
				same("label.code", attrs(code[0]), map[string]any{"key": "code", "v": int64(404), "r0": int64(404), "r1": "code#10"})
			}
			codes := map[int64]int{}
			for _, s := range named(spans, "status") {
				codes[attrs(s)["code"].(int64)]++
			}
			if codes[200] != 1 || codes[503] < 1 || codes[503] > 2 || len(codes) != 2 {
				t.Errorf("status results %v, want 200 once and 503 (once, or twice if the direct call is not inlined)", codes)
			}
		})
	}
}

// TestGenericRefusals: what cannot be mapped to one instantiation, or laid
// out for certain, is refused with one line and exit status 1.
func TestGenericRefusals(t *testing.T) {
	bin := tcagent(t)
	var withDWARF, stripped build
	for _, b := range genericFixtures(t) {
		if b.release == "go1.26" && !b.pie {
			if b.stripped {
				stripped = b
			} else {
				withDWARF = b
			}
		}
	}
	tg := startTarget(t, withDWARF.path)
	st := startTarget(t, stripped.path)
	cases := []struct {
		name   string
		target *target
		yaml   string
		want   string
	}{
		{"several instantiations", tg, "probes:\n  - {symbol: main.Label}\n",
			"main.Label is generic and has 4 instantiations in /proc/" + strconv.Itoa(tg.pid()) + "/exe: name one with its type arguments or its shapes: main.Label[go.shape.*uint8], main.Label[go.shape.int16], main.Label[go.shape.int], main.Label[go.shape.string]"},
		{"no such shape", tg, "probes:\n  - {symbol: \"main.Label[float64]\"}\n",
			"main.Label[float64]: no instantiation of that shape in"},
		{"shape not known from the name", st, "probes:\n  - {symbol: \"main.Label[main.Code]\"}\n",
			"main.Label[main.Code]: cannot tell the shape of type argument main.Code from its name: name the instantiation by its shapes, one of: main.Label[go.shape.*uint8], main.Label[go.shape.int16], main.Label[go.shape.int], main.Label[go.shape.string]"},
		{"type parameter without DWARF", st, "probes:\n  - symbol: \"main.Label[go.shape.int]\"\n    attributes: [{key: v, from: arg1, type: int}]\n    signature: \"func(key string, v T, n int) (T, string)\"\n",
			"cannot lay out type T without DWARF"},
		{"signature against DWARF", tg, "probes:\n  - symbol: \"main.Label[int]\"\n    attributes: [{key: v, from: arg1, type: int}]\n    signature: \"func(v int, key string, n int) (int, string)\"\n",
			"main.Label[go.shape.int]: signature disagrees with the binary's DWARF, func(key string, v go.shape.int, n int) (~r0 go.shape.int, ~r1 string): arg0 is int in the signature, string in DWARF; fix or remove `signature:`"},
		{"string from an int", tg, "probes:\n  - symbol: \"main.Label[go.shape.int]\"\n    attributes: [{key: v, from: arg1, type: string}]\n",
			"arg1 is go.shape.int (int), which cannot be captured as string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, "attach", "--pid", strconv.Itoa(c.target.pid()), "--builtin", "none", "--metrics-addr", "",
				"--probes", writeFile(t, "p.yaml", c.yaml))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1; stderr: %s", err, stderr.String())
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
	// The targets are untouched.
	tg.run(t, "run")
	st.run(t, "run")
}

// TestGenericInspect: inspect shows a shape instantiation's arguments as
// the user numbers them (no dictionary), marks it generic, and shows the
// result an inlinable method's out-of-line copy returns.
func TestGenericInspect(t *testing.T) {
	bin := tcagent(t)
	for _, b := range genericFixtures(t) {
		t.Run(b.name, func(t *testing.T) {
			want := []string{
				"main.Label[go.shape.int]",
				"main.(*Stack[go.shape.string]).Top",
				"  generic: a shape instantiation (its hidden dictionary is not numbered)",
			}
			if !b.stripped {
				want = append(want,
					"func(key string, v go.shape.int, n int) (~r0 go.shape.int, ~r1 string)  generic: a shape instantiation",
					"func(s *main.Stack[go.shape.string], name string) (~r0 string, ~r1 go.shape.string)  generic: a shape instantiation",
					"main.(*meta).Status",
					"func(m *main.meta) (~r0 int)\n")
			}
			var out []byte
			for _, sym := range []string{"Label", "Stack", "Status"} {
				o, err := exec.Command(bin, "inspect", b.path, "--symbol", sym).CombinedOutput()
				if err != nil {
					t.Fatalf("inspect --symbol %s: %v\n%s", sym, err, o)
				}
				out = append(out, o...)
			}
			for _, w := range want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("inspect output lacks %q:\n%s", w, out)
				}
			}
			if bytes.Contains(out, []byte(".dict")) {
				t.Errorf("inspect shows the dictionary:\n%s", out)
			}
		})
	}
}

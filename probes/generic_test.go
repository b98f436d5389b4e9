package probes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestDictIndex(t *testing.T) {
	cases := map[string]int{
		"main.Label[go.shape.int]":                           0,
		"example.com/a/b.F[go.shape.string,go.shape.int]":    0,
		"example.com/a/b.(*Stack[go.shape.int]).Push":        1,
		"example.com/a/b.Stack[go.shape.*uint8].Len":         1,
		"example.com/a.b/c.F[go.shape.interface { M() }]":    0,
		"main.Label[go.shape.int].func1":                     -1, // a closure gets it by its context
		"main.(*Stack[go.shape.int]).Push.func1":             -1,
		"main.(*Stack[go.shape.int]).Push-fm":                -1,
		"main.Label[go.shape.int].deferwrap1":                -1,
		"main.Label[int]":                                    -1, // not a shape instantiation
		"main.(*Store).Get":                                  -1,
		"main.main":                                          -1,
		"github.com/x/y.F[go.shape.struct { A int; B int }]": 0,
	}
	for name, want := range cases {
		if got := dictIndex(name); got != want {
			t.Errorf("dictIndex(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestSkeleton(t *testing.T) {
	cases := []struct {
		name, skel string
		args       []string
	}{
		{"main.Label[go.shape.int]", "main.Label", []string{"go.shape.int"}},
		{"a.b/c.Pair[string, int]", "a.b/c.Pair", []string{"string", "int"}},
		{"a/b.(*Stack[go.shape.map[string]int]).Push", "a/b.(*Stack).Push", []string{"go.shape.map[string]int"}},
		{"a/b.F[go.shape.struct { A [2]int; B string }]", "a/b.F", []string{"go.shape.struct { A [2]int; B string }"}},
		{"a/b.F[*example.com/x.T]", "a/b.F", []string{"*example.com/x.T"}},
	}
	for _, c := range cases {
		skel, args := skeleton(c.name)
		if skel != c.skel || fmt.Sprint(args) != fmt.Sprint(c.args) {
			t.Errorf("skeleton(%q) = %q %q, want %q %q", c.name, skel, args, c.skel, c.args)
		}
	}
}

// fakeBinary is a Binary that has only the named functions.
func fakeBinary(names ...string) *Binary {
	t := &symtab{funcs: map[string]Func{}}
	for i, n := range names {
		t.funcs[n] = Func{Name: n, Entry: uint64(0x1000 * (i + 1))}
		t.names = append(t.names, n)
	}
	sort.Strings(t.names)
	return &Binary{Path: "/bin/x", syms: t}
}

func TestLookupGeneric(t *testing.T) {
	b := fakeBinary(
		"main.Label[go.shape.int]", "main.Label[go.shape.string]", "main.Label[go.shape.*uint8]",
		"main.(*Stack[go.shape.int]).Push", "main.(*Stack[go.shape.string]).Push",
		"main.(*Stack[int]).Push", // a wrapper for calls through an interface
		"main.Pair[go.shape.string,go.shape.int]", "main.Pair[go.shape.string,go.shape.int].func1",
		"main.Only[go.shape.interface {}]", "main.Work",
	)
	ok := map[string]string{
		"main.Label[go.shape.int]":   "main.Label[go.shape.int]",
		"main.Label[int]":            "main.Label[go.shape.int]",
		"main.Label[string]":         "main.Label[go.shape.string]",
		"main.Label[*main.Item]":     "main.Label[go.shape.*uint8]",
		"main.(*Stack[int]).Push":    "main.(*Stack[go.shape.int]).Push", // the shaped one, which direct calls reach
		"main.(*Stack[string]).Push": "main.(*Stack[go.shape.string]).Push",
		"main.Pair[string,int]":      "main.Pair[go.shape.string,go.shape.int]",
		"main.Pair[string, int]":     "main.Pair[go.shape.string,go.shape.int]",
		"main.Pair":                  "main.Pair[go.shape.string,go.shape.int]", // one instantiation
		"main.Only[any]":             "main.Only[go.shape.interface {}]",
		"main.Work":                  "main.Work",
	}
	for name, want := range ok {
		fn, err := b.Lookup(name)
		if err != nil || fn.Name != want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", name, fn.Name, err, want)
		}
	}
	bad := map[string]string{
		"main.Label":                "main.Label is generic and has 3 instantiations in /bin/x: name one with its type arguments or its shapes: main.Label[go.shape.*uint8], main.Label[go.shape.int], main.Label[go.shape.string]",
		"main.Label[float64]":       "main.Label[float64]: no instantiation of that shape in /bin/x; it has: main.Label[go.shape.*uint8], main.Label[go.shape.int], main.Label[go.shape.string]",
		"main.Label[main.ID]":       "main.Label[main.ID]: cannot tell the shape of type argument main.ID from its name: name the instantiation by its shapes, one of: main.Label[go.shape.*uint8], main.Label[go.shape.int], main.Label[go.shape.string]",
		"main.Label[go.shape.bool]": "no instantiation of that shape",
		"main.Pair[string]":         "no instantiation of that shape",
		"main.Wrok":                 "unknown symbol main.Wrok in /bin/x (did you mean main.Work?)",
	}
	for name, want := range bad {
		_, err := b.Lookup(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%q) = %v, want an error containing %q", name, err, want)
		}
	}
	// A pointer type argument maps to the pointer shape, unless the
	// function's constraint has a core type: with both, it is ambiguous.
	b2 := fakeBinary("main.F[go.shape.*uint8]", "main.F[go.shape.*main.T]")
	if _, err := b2.Lookup("main.F[*main.T]"); err == nil || !strings.Contains(err.Error(), "maps to 2 shape instantiations") {
		t.Errorf("ambiguous pointer shape: %v", err)
	}
}

func regsOf(ps []Param) string {
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprint(p.Regs))
	}
	return strings.Join(s, " ")
}

// The dictionary takes the first register of a function and the second of
// a method (after the receiver), and no argument number.
func TestSignatureForGeneric(t *testing.T) {
	cases := []struct {
		fn, sig        string
		params, result string
		dict           uint8
	}{
		{"main.Label[go.shape.int]", "func(key string, v int, n int) (int, string)", "[1 2] [3] [4]", "[0] [1 2]", 0},
		{"main.Label[go.shape.string]", "func(key string, v string, n int) (string, string)", "[1 2] [3 4] [5]", "[0 1] [2 3]", 0},
		{"main.(*Stack[go.shape.int]).Top", "func(s *Stack[int], name string) (string, int)", "[0] [2 3]", "[0 1] [2]", 1},
		{"main.Pair[go.shape.string,go.shape.int]", "func(k string, v int) int", "[1 2] [3]", "[0]", 0},
	}
	for _, c := range cases {
		sig, err := SignatureFor(AMD64, c.fn, c.sig)
		if err != nil {
			t.Fatalf("%s: %v", c.fn, err)
		}
		if !sig.Generic() || sig.Dict.Regs[0] != c.dict || len(sig.Dict.Regs) != 1 {
			t.Errorf("%s: dictionary %+v, want in register %d", c.fn, sig.Dict, c.dict)
		}
		if got := regsOf(sig.Params); got != c.params {
			t.Errorf("%s: params in %s, want %s", c.fn, got, c.params)
		}
		if got := regsOf(sig.Results); got != c.result {
			t.Errorf("%s: results in %s, want %s", c.fn, got, c.result)
		}
	}
	// Not generic: no dictionary.
	sig, err := SignatureFor(AMD64, "main.Label[go.shape.int].func1", "func(a string)")
	if err != nil || sig.Generic() || regsOf(sig.Params) != "[0 1]" {
		t.Errorf("closure: %+v, %v", sig, err)
	}
	// A type parameter has no layout of its own.
	if _, err := SignatureFor(AMD64, "main.Label[go.shape.int]", "func(key string, v T, n int) (T, string)"); err == nil || !strings.Contains(err.Error(), "cannot lay out type T without DWARF") {
		t.Errorf("type parameter accepted: %v", err)
	}
	if _, err := SignatureFor(AMD64, "main.(*Stack[go.shape.int]).Len", "func() int"); err == nil || !strings.Contains(err.Error(), "write its receiver as the first parameter") {
		t.Errorf("method without receiver accepted: %v", err)
	}
}

func TestChooseSignature(t *testing.T) {
	must := func(fn, s string) *Signature {
		sig, err := SignatureFor(AMD64, fn, s)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	const fn = "main.(*meta).Status"
	dw := must(fn, "func(m *meta) int")
	user := must(fn, "func(m *meta) int")
	if got, err := chooseSignature(fn, dw, nil); err != nil || got != dw {
		t.Errorf("DWARF alone: %v, %v", got, err)
	}
	if got, err := chooseSignature(fn, nil, user); err != nil || got != user {
		t.Errorf("signature alone: %v, %v", got, err)
	}
	if got, err := chooseSignature(fn, dw, user); err != nil || got != dw {
		t.Errorf("agreeing: %v, %v", got, err)
	}
	// DWARF that may lack results gives way to the signature.
	partial := must(fn, "func(m *meta)")
	partial.ResultsUnknown = true
	if got, err := chooseSignature(fn, partial, user); err != nil || got != user {
		t.Errorf("partial DWARF: %v, %v", got, err)
	}
	// Disagreements are errors: one of the two is wrong.
	for _, c := range []struct{ dw, user, want string }{
		{"func(m *meta) int", "func(m *meta) (int, error)", "2 results in the signature, 1 in DWARF"},
		{"func(m *meta, s string) int", "func(m *meta, s int) int", "arg1 is int in the signature, string in DWARF"},
		{"func(m *meta, n int32) int", "func(m *meta, n int) int", "arg1 is int in the signature, int32 in DWARF"},
		{"func(m *meta) int", "func(m *meta, n int) int", "2 arguments in the signature, 1 in DWARF"},
	} {
		_, err := chooseSignature(fn, must(fn, c.dw), must(fn, c.user))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "fix or remove `signature:`") {
			t.Errorf("%s vs %s: %v, want %q", c.dw, c.user, err, c.want)
		}
	}
	_, err := chooseSignature(fn, partial, must(fn, "func(m *meta, n int) int"))
	if err == nil || !strings.Contains(err.Error(), "2 arguments in the signature, 1 in DWARF") {
		t.Errorf("partial DWARF with other arguments: %v", err)
	}
}

// TestGenericDWARF reads the generic fixture's DWARF as the local Go
// writes it: the dictionary takes its register but no number, a named
// type argument maps to its shape, and an inlinable method's out-of-line
// copy has its result.
func TestGenericDWARF(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "generic")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "../kernel-tests/testdata/generic"
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	b, err := Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cases := []struct {
		user, fn       string
		params, result string
		dict           uint8
	}{
		{"main.Label[int]", "main.Label[go.shape.int]", "[1 2] [3] [4]", "[0] [1 2]", 0},
		{"main.Label[main.Code]", "main.Label[go.shape.int16]", "[1 2] [3] [4]", "[0] [1 2]", 0},
		{"main.(*Stack[string]).Top", "main.(*Stack[go.shape.string]).Top", "[0] [2 3]", "[0 1] [2 3]", 1},
	}
	for _, c := range cases {
		fn, err := b.Lookup(c.user)
		if err != nil || fn.Name != c.fn {
			t.Fatalf("Lookup(%s) = %q, %v; want %s", c.user, fn.Name, err, c.fn)
		}
		sig, err := b.SignatureFromDWARF(fn.Name)
		if err != nil || sig == nil {
			t.Fatalf("%s: %v, %v", fn.Name, sig, err)
		}
		if !sig.Generic() || fmt.Sprint(sig.Dict.Regs) != fmt.Sprintf("[%d]", c.dict) {
			t.Errorf("%s: dictionary %+v, want in register %d", fn.Name, sig.Dict, c.dict)
		}
		if got := regsOf(sig.Params); got != c.params {
			t.Errorf("%s: params %s in %s, want %s", fn.Name, sig, got, c.params)
		}
		if got := regsOf(sig.Results); got != c.result {
			t.Errorf("%s: results %s in %s, want %s", fn.Name, sig, got, c.result)
		}
	}
	sig, err := b.SignatureFromDWARF("main.(*meta).Status")
	if err != nil || sig == nil || sig.Generic() || sig.ResultsUnknown || sig.String() != "func(m *main.meta) (~r0 int)" || regsOf(sig.Results) != "[0]" {
		t.Errorf("Status: %v (results unknown %v), %v", sig, sig != nil && sig.ResultsUnknown, err)
	}
}

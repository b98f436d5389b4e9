package probes

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
)

// compactSrc is a program whose handler returns an error value of a
// pointer type and compares its path with a string literal: what the
// decoder reads from the file (type names, read-only literals).
const compactSrc = `package main

import (
	"errors"
	"net/http"
	"os"
)

var errNope = errors.New("nope")

//go:noinline
func handle(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path == "/compact-literal-0123456789" {
		return errNope
	}
	return nil
}

func main() {
	if len(os.Args) > 5 {
		http.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(w, r) }))
	}
}
`

// TestCompact: a compacted Binary answers what tracing asks once the probes
// are compiled (type names, read-only literals, file offsets) exactly as
// the full Binary did, without parsing its tables again; and analysis
// after Compact (functions, runtime offsets, DWARF signatures, compiling)
// gives what it gave before. Built with DWARF by Go 1.26 and stripped PIE
// by Go 1.27.
func TestCompact(t *testing.T) {
	const literal = "/compact-literal-0123456789"
	for _, build := range []struct {
		toolchain string
		args      []string
	}{{"go1.26.8", nil}, {"go1.27.3", []string{"-buildmode=pie", "-ldflags=-s -w"}}} {
		t.Run(build.toolchain, func(t *testing.T) {
			path := program(t, "compact", compactSrc, build.toolchain, build.args...)
			full, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer full.Close()
			b, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()

			// What compiling asks, on the full binary first.
			rt, err := full.Runtime()
			if err != nil {
				t.Fatal(err)
			}
			spec := Spec{Symbol: "main.handle", CaptureError: true}
			p, err := Compile(full, spec, 0, rt)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := full.SignatureFromDWARF("main.handle")
			if err != nil {
				t.Fatal(err)
			}
			typ, ok := full.TypeAddr("*errors.errorString")
			if !ok {
				t.Fatal("*errors.errorString not found")
			}
			lit := literalAddr(t, full, literal)

			b.Compact()
			if b.syms != nil || b.dw != nil {
				t.Fatal("Compact kept the tables")
			}
			// What the decoder and the attach ask.
			if got, want := b.TypeName(typ), full.TypeName(typ); got != want || want != "*errors.errorString" {
				t.Errorf("TypeName(%#x) = %q, full binary %q", typ, got, want)
			}
			if got, ok := b.ReadOnlyString(lit, uint64(len(literal))); !ok || got != literal {
				t.Errorf("ReadOnlyString(%#x) = %q, %v; want %q", lit, got, ok, literal)
			}
			for _, a := range append([]uint64{p.Func.Entry}, p.Ends...) {
				got, err1 := b.FileOffset(a)
				want, err2 := full.FileOffset(a)
				if got != want || err1 != nil || err2 != nil {
					t.Errorf("FileOffset(%#x) = %#x, %v; full binary %#x, %v", a, got, err1, want, err2)
				}
			}
			if b.syms != nil || b.dw != nil {
				t.Fatal("reading type names, literals and file offsets parsed the tables again")
			}

			// Analysis again, after Compact.
			rt2, err := b.Runtime()
			if err != nil || rt2 != rt {
				t.Errorf("Runtime() = %+v, %v after Compact; before %+v", rt2, err, rt)
			}
			if fn, ok := b.Func("main.handle"); !ok || fn != p.Func {
				t.Errorf("Func(main.handle) = %+v, %v after Compact; before %+v", fn, ok, p.Func)
			}
			if b.Functions() != full.Functions() {
				t.Errorf("Functions() = %d after Compact, %d before", b.Functions(), full.Functions())
			}
			sig2, err := b.SignatureFromDWARF("main.handle")
			if err != nil || !reflect.DeepEqual(sig2, sig) {
				t.Errorf("SignatureFromDWARF = %+v, %v after Compact; before %+v", sig2, err, sig)
			}
			p2, err := Compile(b, spec, 0, rt2)
			if err != nil {
				t.Fatal(err)
			}
			if p2.Func != p.Func || !reflect.DeepEqual(p2.Placement, p.Placement) || !reflect.DeepEqual(p2.Recipe, p.Recipe) || !reflect.DeepEqual(p2.Ends, p.Ends) {
				t.Errorf("compiled after Compact: %+v %+v %+v; before %+v %+v %+v", p2.Func, p2.Placement, p2.Recipe, p.Func, p.Placement, p.Recipe)
			}
		})
	}
}

// literalAddr returns the address of the string literal s in b's
// read-only data.
func literalAddr(t *testing.T, b *Binary, s string) uint64 {
	t.Helper()
	sec := b.f.Section(".rodata")
	if sec == nil {
		t.Fatal("no .rodata")
	}
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		t.Fatalf("%q not in .rodata", s)
	}
	return sec.Addr + uint64(i)
}

// TestCompactConcurrent: Compact beside an analysis and beside type-name
// reads (the daemon's readers decode while another image of the binary
// compiles, one at a time) is safe (run with -race) and every answer stays
// the full binary's.
func TestCompactConcurrent(t *testing.T) {
	path := program(t, "compact", compactSrc, "go1.26.8")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want, ok := b.Func("main.handle")
	if !ok {
		t.Fatal("no main.handle")
	}
	typ, ok := b.TypeAddr("*errors.errorString")
	if !ok {
		t.Fatal("*errors.errorString not found")
	}
	done := make(chan struct{})
	errs := make(chan string, 2)
	go func() { // an image compiling
		for i := 0; i < 5; i++ {
			if fn, ok := b.Func("main.handle"); !ok || fn != want {
				errs <- "Func(main.handle) changed"
			}
			if sig, err := b.SignatureFromDWARF("main.handle"); err != nil || sig == nil {
				errs <- fmt.Sprintf("SignatureFromDWARF: %v, %v", sig, err)
			}
		}
		done <- struct{}{}
	}()
	go func() { // a reader decoding
		for i := 0; i < 1000; i++ {
			if n := b.TypeName(typ); n != "*errors.errorString" {
				errs <- "TypeName: " + n
			}
		}
		done <- struct{}{}
	}()
	for running := 2; running > 0; {
		select {
		case <-done:
			running--
		case e := <-errs:
			t.Fatal(e)
		default:
			b.Compact()
		}
	}
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
}

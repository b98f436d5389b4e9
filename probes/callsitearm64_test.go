package probes

import (
	"slices"
	"testing"
)

// poolSrc gives a function two direct calls of sync.(*Pool).Put, as the
// routers the routes set reads make (one after the handler, one on an
// early return), and one through a func value.
const poolSrc = `package main

import (
	"os"
	"sync"
)

var pool = sync.Pool{New: func() any { return new([64]byte) }}

//go:noinline
func serve(n int) int {
	b := pool.Get().(*[64]byte)
	if n < 0 {
		pool.Put(b)
		return 0
	}
	b[n%64] = byte(n)
	r := int(b[0])
	pool.Put(b)
	return r
}

func main() {
	put := pool.Put
	put(new([64]byte))
	os.Exit(serve(len(os.Args)) & 0)
}
`

// TestCallSitesARM64 checks CallSites on arm64 builds (go1.27.3, plain and
// stripped PIE) against go tool objdump: every BL to sync.(*Pool).Put in
// main.serve, and no indirect one.
func TestCallSitesARM64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arm64 programs")
	}
	t.Setenv("GOARCH", "arm64")
	plain := program(t, "arm64pool", poolSrc, "go1.27.3")
	twin := program(t, "arm64pool", poolSrc, "go1.27.3", "-buildmode=pie")
	stripped := program(t, "arm64pool", poolSrc, "go1.27.3", "-buildmode=pie", "-ldflags=-s -w")
	for _, c := range []struct{ bin, dump string }{{plain, plain}, {stripped, twin}} {
		b, err := Open(c.bin)
		if err != nil {
			t.Fatal(err)
		}
		sites, err := CallSites(b, "main.serve", "sync.(*Pool).Put")
		if err != nil {
			t.Fatalf("%s: %v", c.bin, err)
		}
		var got []uint64
		for _, s := range sites {
			if s.Off != s.Call || s.Callee != "sync.(*Pool).Put" {
				t.Errorf("%s: site %+v", c.bin, s)
			}
			got = append(got, s.Off)
		}
		want := objdumpCalls(t, c.dump, "main.serve", "CALL sync.(*Pool).Put(SB)")
		if len(want) != 2 || !slices.Equal(got, want) {
			t.Errorf("%s: CallSites at %v, objdump's BLs at %v (want 2)", c.bin, got, want)
		}
	}
}

// objdumpCalls returns the offsets in fn of the instructions objdump
// prints as text.
func objdumpCalls(t *testing.T, bin, fn, text string) []uint64 {
	t.Helper()
	var offs []uint64
	addrs, texts := objdumpText(t, bin, fn)
	for i, x := range texts {
		if x == text {
			offs = append(offs, addrs[i])
		}
	}
	return offs
}

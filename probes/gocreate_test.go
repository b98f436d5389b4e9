package probes

import (
	"bytes"
	"debug/elf"
	"slices"
	"sort"
	"strings"
	"testing"
)

// synthBinary lays the functions' code out one per 0x1000 bytes from
// 0x1000, in the order given, in one loaded segment: a Binary whose code
// the finders read.
func synthBinary(funcs ...synthFunc) *Binary {
	const step = 0x1000
	img := make([]byte, step*(len(funcs)+1))
	b := &Binary{Path: "/bin/synth", syms: &symtab{funcs: map[string]Func{}}}
	for i, f := range funcs {
		entry := uint64(step * (i + 1))
		copy(img[entry:], f.code(entry))
		b.syms.funcs[f.name] = Func{Name: f.name, Entry: entry, End: entry + uint64(len(f.code(entry)))}
		b.syms.names = append(b.syms.names, f.name)
	}
	sort.Strings(b.syms.names)
	b.f = &elf.File{Progs: []*elf.Prog{{ProgHeader: elf.ProgHeader{Type: elf.PT_LOAD, Vaddr: 0, Filesz: uint64(len(img))}, ReaderAt: bytes.NewReader(img)}}}
	return b
}

// synthFunc is a function of synthBinary: its code as it is at entry.
type synthFunc struct {
	name string
	code func(entry uint64) []byte
}

// fixed is code that calls nothing.
func fixed(name string, code ...byte) synthFunc {
	return synthFunc{name, func(uint64) []byte { return code }}
}

// calling is code with direct CALLs: parts are raw bytes, and a uint64 n
// is CALL rel32 to the n-th function (1-based) of synthBinary's layout.
func calling(name string, parts ...any) synthFunc {
	return synthFunc{name, func(entry uint64) []byte {
		var code []byte
		for _, p := range parts {
			switch p := p.(type) {
			case []byte:
				code = append(code, p...)
			case uint64:
				code = append(code, callRel32(entry+uint64(len(code)), 0x1000*p)...)
			}
		}
		return code
	}}
}

var (
	movAXBX      = []byte{0x48, 0x89, 0xc3}             // MOVQ AX, BX
	movCX1       = []byte{0xb9, 0x01, 0, 0, 0}          // MOVL $1, CX
	xorBX        = []byte{0x31, 0xdb}                   // XORL BX, BX
	spillAX      = []byte{0x48, 0x89, 0x44, 0x24, 0x08} // MOVQ AX, 8(SP)
	ret          = []byte{0xc3}                         // RET
	frame        = []byte{0x55, 0x48, 0x89, 0xe5}       // PUSHQ BP; MOVQ SP, BP
	unframeRet   = []byte{0x5d, 0xc3}                   // POPQ BP; RET
	twoRets      = []byte{0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x5d, 0xc3}
	leafFunction = append(append([]byte{}, frame...), unframeRet...)
)

// runtimeOf is a synthetic runtime whose newproc.func1 runs between
// newproc1 and runqput the code between, and whose debugger calls newproc1
// too.
func runtimeOf(between ...byte) *Binary {
	return synthBinary(
		fixed("runtime.newproc1", twoRets...),                                         // 1
		fixed("runtime.runqput", ret...),                                              // 2
		calling("runtime.newproc.func1", uint64(1), between, uint64(2), ret),          // 3
		calling("runtime.debugCallWrap.func1", frame, uint64(1), spillAX, unframeRet), // 4
		fixed("runtime.goexit1", leafFunction...),                                     // 5
		fixed("runtime.gopanic", leafFunction...),                                     // 6
		calling("main.main", frame, uint64(3), unframeRet),                            // 7
	)
}

func TestGoCreateOnEmulatedSite(t *testing.T) {
	b := runtimeOf(append(append([]byte{}, movAXBX...), movCX1...)...)
	for _, old := range []bool{false, true} {
		rt := Runtime{GoidOffset: 152, StackHiOffset: 8, ParentGoidOffset: 272}
		if old {
			rt.ParentGoidOffset = 0 // Go 1.19, 1.20
		}
		rp, err := CompileRuntime(b, rt, RuntimeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// newproc.func1 at 0x3000: CALL newproc1 (5), MOVQ AX, BX (3),
		// MOVL $1, CX (5), then CALL runqput at +0xd.
		if rp.GoCreateFallback != "" || !slices.Equal(rp.GoCreateCall, []uint64{0x300d}) {
			t.Fatalf("old %v: call site %#x, fallback %q; want 0x300d, none", old, rp.GoCreateCall, rp.GoCreateFallback)
		}
		if rp.GoCreateSite != "runtime.newproc.func1+0xd CALL runtime.runqput" {
			t.Errorf("site %q", rp.GoCreateSite)
		}
		// debugCallWrap.func1 at 0x4000: PUSHQ BP; MOVQ SP, BP (4), CALL
		// newproc1, returning to +0x9.
		if !slices.Equal(rp.GoCreate, []uint64{0x4009}) {
			t.Errorf("old %v: return sites %#x, want debugCallWrap.func1's 0x4009", old, rp.GoCreate)
		}
		// Without parentGoid, the creator is read at both CALLs of newproc1.
		var want []uint64
		if old {
			want = []uint64{0x4004, 0x3000}
		}
		if got := slices.Clone(rp.GoCreateEntry); !slices.Equal(sorted(got), sorted(want)) || rp.Recipe.Creator != old {
			t.Errorf("old %v: creator read at %#x (Creator %v), want %#x", old, rp.GoCreateEntry, rp.Recipe.Creator, want)
		}
	}
}

func sorted(s []uint64) []uint64 { slices.Sort(s); return s }

// TestGoCreateFallback: where the new g is not proved to be in BX at the
// CALL runqput, or the RET probes are forced, goroutine creation stays on
// newproc1's RETs (and, without parentGoid, its entry), and says why.
func TestGoCreateFallback(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      *Binary
		opts   RuntimeOptions
		reason string
	}{
		{"BX clobbered", runtimeOf(append(append([]byte{}, movAXBX...), xorBX...)...), RuntimeOptions{}, "not in BX"},
		{"forced", runtimeOf(movAXBX...), RuntimeOptions{RetGoCreate: true}, "forced"},
		{"no newproc.func1", synthBinary(fixed("runtime.newproc1", twoRets...), fixed("runtime.goexit1", leafFunction...), fixed("runtime.gopanic", leafFunction...)), RuntimeOptions{}, "no runtime.newproc.func1"},
	} {
		for _, old := range []bool{false, true} {
			rt := Runtime{GoidOffset: 152, StackHiOffset: 8, ParentGoidOffset: 272}
			if old {
				rt.ParentGoidOffset = 0
			}
			rp, err := CompileRuntime(tc.b, rt, tc.opts)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !strings.Contains(rp.GoCreateFallback, tc.reason) || rp.GoCreateSite != "runtime.newproc1 RET" {
				t.Errorf("%s: fallback %q at %q, want a reason with %q", tc.name, rp.GoCreateFallback, rp.GoCreateSite, tc.reason)
			}
			// newproc1 at 0x1000: RETs at +0x5 and +0x7.
			if !slices.Equal(rp.GoCreate, []uint64{0x1005, 0x1007}) || len(rp.GoCreateCall) != 0 {
				t.Errorf("%s: RET sites %#x and call sites %#x, want newproc1's RETs 0x1005, 0x1007 and no call site", tc.name, rp.GoCreate, rp.GoCreateCall)
			}
			var want []uint64
			if old {
				want = []uint64{0x1000} // the entry: no stack check, offset 0
			}
			if !slices.Equal(rp.GoCreateEntry, want) {
				t.Errorf("%s old %v: entries %#x, want %#x", tc.name, old, rp.GoCreateEntry, want)
			}
		}
	}
}

// TestGoCreateEveryRelease places goroutine creation on the emulated site
// in the net/http server every supported release builds: no fallback, the
// site is GoCreateSite's, the one other caller's return is covered, and the
// creator is read at both CALLs of newproc1 where g has no parentGoid.
func TestGoCreateEveryRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program with every supported Go release")
	}
	for _, tc := range supportedToolchains {
		t.Run(tc, func(t *testing.T) {
			b, err := Open(siteBinary(t, tc))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			rt, err := b.Runtime()
			if err != nil {
				t.Fatal(err)
			}
			rp, err := CompileRuntime(b, rt, RuntimeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			site, err := GoCreateSite(b)
			if err != nil {
				t.Fatal(err)
			}
			if rp.GoCreateFallback != "" || !slices.Equal(rp.GoCreateCall, []uint64{site.Func.Entry + site.Off}) {
				t.Fatalf("call sites %#x, fallback %q", rp.GoCreateCall, rp.GoCreateFallback)
			}
			dbg, _ := b.Func("runtime.debugCallWrap.func1")
			if len(rp.GoCreate) != 1 || rp.GoCreate[0] <= dbg.Entry || rp.GoCreate[0] >= dbg.End {
				t.Fatalf("return sites %#x, want one in debugCallWrap.func1 [%#x, %#x)", rp.GoCreate, dbg.Entry, dbg.End)
			}
			checkCall(t, b, Site{Func: dbg, Off: rp.GoCreate[0] - 5 - dbg.Entry, Callee: "runtime.newproc1"}, "runtime.newproc1")
			if old := tc < "go1.21"; old != rp.Recipe.Creator {
				t.Fatalf("Creator %v for %s", rp.Recipe.Creator, tc)
			}
			if rp.Recipe.Creator {
				if len(rp.GoCreateEntry) != 2 {
					t.Fatalf("creator read at %#x, want both CALLs of newproc1", rp.GoCreateEntry)
				}
				for _, a := range rp.GoCreateEntry {
					name := "runtime.newproc.func1"
					if a >= dbg.Entry && a < dbg.End {
						name = "runtime.debugCallWrap.func1"
					}
					fn, _ := b.Func(name)
					checkCall(t, b, Site{Func: fn, Off: a - fn.Entry, Callee: "runtime.newproc1"}, "runtime.newproc1")
				}
			} else if len(rp.GoCreateEntry) != 0 {
				t.Fatalf("creator read at %#x with g.parentGoid", rp.GoCreateEntry)
			}
			forced, err := CompileRuntime(b, rt, RuntimeOptions{RetGoCreate: true})
			if err != nil {
				t.Fatal(err)
			}
			np1, _ := b.Func("runtime.newproc1")
			code, _ := b.Code(np1)
			pl, _ := Place(AMD64, code)
			var rets []uint64
			for _, r := range pl.Returns {
				rets = append(rets, np1.Entry+r)
			}
			if !slices.Equal(forced.GoCreate, rets) || len(forced.GoCreateCall) != 0 || forced.GoCreateFallback == "" {
				t.Fatalf("forced: %#x %#x %q, want newproc1's RETs %#x", forced.GoCreate, forced.GoCreateCall, forced.GoCreateFallback, rets)
			}
			t.Logf("%s; also %s", rp.GoCreateSite, dbg.Name)
		})
	}
}

// TestGoCreateCoroutines: a program that uses iter.Pull links
// runtime.newcoro.func1, which starts the coroutine's goroutine through
// newproc1 too; its return site is probed.
func TestGoCreateCoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	// iter needs Go 1.23; the module's go line (1.19) lets the newest build it.
	bin := program(t, "coro", "package main\n\nimport (\n\t\"fmt\"\n\t\"iter\"\n\t\"slices\"\n)\n\nfunc main() {\n\tnext, stop := iter.Pull(slices.Values([]int{1, 2}))\n\tdefer stop()\n\tfmt.Println(next())\n}\n", supportedToolchains[len(supportedToolchains)-1])
	b, err := Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rt, err := b.Runtime()
	if err != nil {
		t.Fatal(err)
	}
	rp, err := CompileRuntime(b, rt, RuntimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rp.GoCreateFallback != "" || len(rp.GoCreateCall) != 1 {
		t.Fatalf("call sites %#x, fallback %q", rp.GoCreateCall, rp.GoCreateFallback)
	}
	var in []string
	for _, a := range rp.GoCreate {
		for _, name := range []string{"runtime.newcoro.func1", "runtime.debugCallWrap.func1"} {
			if fn, ok := b.Func(name); ok && a > fn.Entry && a < fn.End {
				in = append(in, name)
			}
		}
	}
	slices.Sort(in)
	if strings.Join(in, " ") != "runtime.debugCallWrap.func1 runtime.newcoro.func1" || len(rp.GoCreate) != 2 {
		t.Fatalf("return sites %#x in %v, want one each in debugCallWrap.func1 and newcoro.func1", rp.GoCreate, in)
	}
}

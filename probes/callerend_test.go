package probes

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// httpOf is a synthetic net/http whose (*conn).serve calls ServeHTTP then,
// straight after, hijacked, and whose initALPNRequest.ServeHTTP calls
// ServeHTTP too; extra is appended as function 6.
func httpOf(extra ...synthFunc) *Binary {
	return synthBinary(append([]synthFunc{
		fixed("net/http.serverHandler.ServeHTTP", twoRets...),                              // 1
		fixed("net/http.(*conn).hijacked", ret...),                                         // 2
		calling("net/http.(*conn).serve", frame, uint64(1), movCX1, uint64(2), unframeRet), // 3
		calling("net/http.initALPNRequest.ServeHTTP", frame, uint64(1), unframeRet),        // 4
		calling("main.main", frame, uint64(3), unframeRet),                                 // 5
	}, extra...)...)
}

// serverProbe compiles the synthetic ServeHTTP's probe and moves its end
// into its callers.
func serverProbe(t *testing.T, b *Binary, force bool) *Probe {
	t.Helper()
	p, ok, err := NewProbe(b, "net/http.serverHandler.ServeHTTP", 0, Runtime{})
	if err != nil || !ok {
		t.Fatalf("NewProbe: %v %v", ok, err)
	}
	site, err := HTTPServeEndSite(b)
	var indirect []Site
	if err == nil {
		indirect, err = HTTPIndirectEnds(b)
	}
	EndInCallers(b, p, "net/http.", site, indirect, err, force)
	return p
}

func TestEndInCallers(t *testing.T) {
	p := serverProbe(t, httpOf(), false)
	// serve at 0x3000: PUSHQ BP, MOVQ SP, BP (4), CALL ServeHTTP (5),
	// MOVL $1, CX (5): CALL hijacked at +0xe. initALPNRequest.ServeHTTP at
	// 0x4000: the return address of its CALL at +4 is +9.
	if want := []uint64{0x300e, 0x4009}; !slices.Equal(p.Ends, want) || p.EndFallback != "" {
		t.Fatalf("ends %#x, fallback %q; want %#x, none", p.Ends, p.EndFallback, want)
	}
	if p.EndSite != "net/http.(*conn).serve+0xe CALL net/http.(*conn).hijacked" {
		t.Errorf("end site %q", p.EndSite)
	}
	// An indirect call's return site (HTTPIndirectEnds) comes last.
	b := httpOf()
	q, _, err := NewProbe(b, "net/http.serverHandler.ServeHTTP", 0, Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	site, err := HTTPServeEndSite(b)
	h2, _ := b.Func("net/http.initALPNRequest.ServeHTTP")
	EndInCallers(b, q, "net/http.", site, []Site{{Func: h2, Off: 0x20}}, err, false)
	if want := []uint64{0x300e, 0x4009, 0x4020}; !slices.Equal(q.Ends, want) || q.EndFallback != "" {
		t.Errorf("with an indirect site: ends %#x, fallback %q; want %#x, none", q.Ends, q.EndFallback, want)
	}
}

// TestEndInCallersFallback: where a caller's end cannot be seen, or when
// forced, the probe stays on its RETs and says why.
func TestEndInCallersFallback(t *testing.T) {
	jmpTo1 := synthFunc{"net/http.(*serverHandler).ServeHTTP", func(entry uint64) []byte {
		c := callRel32(entry, 0x1000)
		c[0] = 0xe9 // JMP rel32
		return c
	}}
	for _, tc := range []struct {
		name   string
		b      *Binary
		force  bool
		reason string
	}{
		{"forced", httpOf(), true, "forced"},
		{"tail call", httpOf(jmpTo1), false, "tail call"},
		{"no hijacked", synthBinary(
			fixed("net/http.serverHandler.ServeHTTP", twoRets...),
			fixed("net/http.(*conn).other", ret...),
			calling("net/http.(*conn).serve", frame, uint64(1), uint64(2), unframeRet),
		), false, "not (*conn).hijacked"},
		{"branch between", synthBinary(
			fixed("net/http.serverHandler.ServeHTTP", twoRets...),
			fixed("net/http.(*conn).hijacked", ret...),
			calling("net/http.(*conn).serve", frame, uint64(1), []byte{0x74, 0x00}, uint64(2), unframeRet), // JEQ +0
		), false, "between the calls"},
		{"called twice", synthBinary(
			fixed("net/http.serverHandler.ServeHTTP", twoRets...),
			fixed("net/http.(*conn).hijacked", ret...),
			calling("net/http.(*conn).serve", frame, uint64(1), uint64(2), uint64(1), unframeRet),
		), false, "2 times"},
	} {
		p := serverProbe(t, tc.b, tc.force)
		if len(p.Ends) != 0 || !strings.Contains(p.EndFallback, tc.reason) || p.EndSite != "net/http.serverHandler.ServeHTTP RET" {
			t.Errorf("%s: ends %#x at %q, fallback %q; want the RETs, a reason with %q", tc.name, p.Ends, p.EndSite, p.EndFallback, tc.reason)
		}
		if len(p.Placement.Returns) != 2 {
			t.Errorf("%s: RETs %#x, want both", tc.name, p.Placement.Returns)
		}
	}
}

// TestEndInCallersEveryRelease: in the net/http server every supported
// release builds, the server span ends at HTTPServeEndSite's CALL, at
// the return address of every other direct CALL of ServeHTTP, each just
// past a CALL serverHandler.ServeHTTP in net/http, and from Go 1.27 at
// the return address of http2Handler.ServeHTTP's interface call.
func TestEndInCallersEveryRelease(t *testing.T) {
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
			p := serverProbe(t, b, false)
			if p.EndFallback != "" {
				t.Fatalf("fallback: %s", p.EndFallback)
			}
			site, err := HTTPServeEndSite(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Ends) < 2 || p.Ends[0] != site.Func.Entry+site.Off {
				t.Fatalf("ends %#x, want the site %#x first and initALPNRequest's return", p.Ends, site.Func.Entry+site.Off)
			}
			var in []string
			for _, a := range p.Ends[1:] {
				name, ok := b.funcOf(a)
				if !ok || !strings.HasPrefix(name, "net/http.") || name == site.Func.Name {
					t.Fatalf("end %#x in %q", a, name)
				}
				in = append(in, name)
				if name == "net/http.http2Handler.ServeHTTP" {
					continue // Go 1.27's interface call (TestCallSitesEveryRelease)
				}
				fn, _ := b.Func(name)
				checkCall(t, b, Site{Func: fn, Off: a - 5 - fn.Entry, Callee: "net/http.serverHandler.ServeHTTP"}, "net/http.serverHandler.ServeHTTP")
			}
			if !slices.Contains(in, "net/http.initALPNRequest.ServeHTTP") {
				t.Errorf("ends in %v, want initALPNRequest.ServeHTTP among them", in)
			}
			if h2 := slices.Contains(in, "net/http.http2Handler.ServeHTTP"); h2 != strings.HasPrefix(tc, "go1.27") {
				t.Errorf("ends in %v: http2Handler.ServeHTTP's interface call among them %v, want it from Go 1.27 on", in, h2)
			}
			// noJumpTo disassembles only what mayJump lets through:
			// every direct JMP in net/http must get through.
			jumps := 0
			for _, name := range b.Match("net/http.") {
				fn, _ := b.Func(name)
				insts, err := b.disassemble(fn)
				if err != nil {
					t.Fatal(err)
				}
				code, _ := b.Code(fn)
				for _, in := range insts {
					if rel, ok := in.Args[0].(x86asm.Rel); ok && in.Op == x86asm.JMP {
						jumps++
						if to := uint64(int64(fn.Entry) + int64(in.off) + int64(in.Len) + int64(rel)); !mayJump(code, fn.Entry, to) {
							t.Fatalf("%s+%#x: %v to %#x, which mayJump misses", name, in.off, in, to)
						}
					}
				}
			}
			if jumps < 500 {
				t.Fatalf("%d direct JMPs in net/http: too few to tell", jumps)
			}
			forced := serverProbe(t, b, true)
			if len(forced.Ends) != 0 || forced.EndFallback == "" {
				t.Fatalf("forced: ends %#x, fallback %q", forced.Ends, forced.EndFallback)
			}
			t.Logf("%s; also %v", p.EndSite, in)
		})
	}
}

// funcOf names the function holding addr.
func (b *Binary) funcOf(addr uint64) (string, bool) {
	for name, fn := range b.symbols().funcs {
		if addr > fn.Entry && addr < fn.End {
			return name, true
		}
	}
	return "", false
}

func TestMayJump(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   []byte
		target uint64
		want   bool
	}{
		// At base 0x1000: NOP; JMP rel32 to 0x1006+0x10.
		{"rel32", []byte{0x90, 0xe9, 0x10, 0, 0, 0}, 0x1016, true},
		{"rel32, other target", []byte{0x90, 0xe9, 0x10, 0, 0, 0}, 0x1017, false},
		{"rel32 cut short", []byte{0x90, 0xe9, 0x10, 0, 0}, 0x1016, false},
		{"rel32 backwards", []byte{0x90, 0xe9, 0xe0, 0xff, 0xff, 0xff}, 0xfe6, true},
		// NOP; JMP rel8 to 0x1003-2.
		{"rel8", []byte{0x90, 0xeb, 0xfe}, 0x1001, true},
		{"rel8, other target", []byte{0x90, 0xeb, 0xfe}, 0x1003, false},
		// JMP rel16 (66 E9) to 0x1004+0x100.
		{"rel16", []byte{0x66, 0xe9, 0x00, 0x01}, 0x1104, true},
		{"a CALL", []byte{0x90, 0xe8, 0x10, 0, 0, 0}, 0x1016, false},
	} {
		if got := mayJump(tc.code, 0x1000, tc.target); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

package probes

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// callRel32 encodes CALL rel32 at address at to target.
func callRel32(at, target uint64) []byte {
	r := uint32(int64(target) - int64(at+5))
	return []byte{0xe8, byte(r), byte(r >> 8), byte(r >> 16), byte(r >> 24)}
}

func TestCallAfterFindsNextCall(t *testing.T) {
	const base, callee, next = 0x1000, 0x5000, 0x6000
	code := append([]byte{0x48, 0x89, 0xc3}, callRel32(base+3, callee)...) // MOVQ AX, BX; CALL callee
	code = append(code, 0x48, 0x89, 0xc3)                                  // MOVQ AX, BX
	code = append(code, callRel32(base+uint64(len(code)), next)...)
	code = append(code, 0xc3)
	off, target, err := CallAfter(code, base, callee)
	if err != nil || off != 11 || target != next {
		t.Fatalf("CallAfter = %#x, %#x, %v; want 0xb, %#x, nil", off, target, err, next)
	}
}

func TestCallAfterRefusesBranch(t *testing.T) {
	const base, callee, next = 0x1000, 0x5000, 0x6000
	code := callRel32(base, callee)
	code = append(code, 0x74, 0x00) // JE +0
	code = append(code, callRel32(base+uint64(len(code)), next)...)
	if _, _, err := CallAfter(code, base, callee); !errors.Is(err, ErrNoCallSite) {
		t.Fatalf("err = %v, want ErrNoCallSite", err)
	}
	if _, _, err := CallAfter([]byte{0x90, 0xc3}, base, callee); !errors.Is(err, ErrNoCallSite) {
		t.Fatalf("pattern-less: err = %v, want ErrNoCallSite", err)
	}
}

func TestCallAfterIndirectCall(t *testing.T) {
	const base, callee, next = 0x1000, 0x5000, 0x6000
	code := callRel32(base, callee)
	code = append(code, 0xff, 0xd6) // CALL SI
	code = append(code, callRel32(base+uint64(len(code)), next)...)
	insts, err := disassemble(code)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := callAfter(insts, base, callee, false); !errors.Is(err, ErrNoCallSite) {
		t.Fatalf("strict: err = %v, want ErrNoCallSite", err)
	}
	call, site, err := callAfter(insts, base, callee, true)
	if err != nil || call != 0 || site != 2 {
		t.Fatalf("indirect allowed: %d, %d, %v; want 0, 2, nil", call, site, err)
	}
}

func TestCarries(t *testing.T) {
	for _, tc := range []struct {
		name string
		code []byte
		want bool
	}{
		{"moved", []byte{0x48, 0x89, 0xc3}, true},                                                    // MOVQ AX, BX
		{"moved then AX reused", []byte{0x48, 0x89, 0xc3, 0x48, 0x89, 0xd0}, true},                   // MOVQ AX, BX; MOVQ DX, AX
		{"stored", []byte{0x48, 0x89, 0xc3, 0x48, 0x89, 0x5c, 0x24, 0x08}, true},                     // MOVQ AX, BX; MOVQ BX, 8(SP)
		{"through CX", []byte{0x48, 0x89, 0xc1, 0x48, 0x89, 0xcb}, true},                             // MOVQ AX, CX; MOVQ CX, BX
		{"never moved", []byte{0x90}, false},                                                         // NOP
		{"clobbered", []byte{0x48, 0x89, 0xc3, 0x31, 0xdb}, false},                                   // MOVQ AX, BX; XORL BX, BX
		{"low half only", []byte{0x89, 0xc3}, false},                                                 // MOVL AX, BX
		{"AX clobbered first", []byte{0x48, 0x8b, 0x42, 0x08, 0x48, 0x89, 0xc3}, false},              // MOVQ 8(DX), AX; MOVQ AX, BX
		{"unmodelled write", []byte{0x48, 0x89, 0xc3, 0x48, 0xff, 0xc3}, false},                      // MOVQ AX, BX; INCQ BX
		{"byte write", []byte{0x48, 0x89, 0xc3, 0xb3, 0x01}, false},                                  // MOVQ AX, BX; MOVB $1, BL
		{"other registers written", []byte{0x48, 0x89, 0xc3, 0xb9, 0x01, 0, 0, 0, 0x31, 0xc0}, true}, // MOVQ AX, BX; MOVL $1, CX; XORL AX, AX
	} {
		insts, err := disassemble(tc.code)
		if err != nil {
			t.Fatal(err)
		}
		if got := carries(insts, x86asm.RAX, x86asm.RBX); got != tc.want {
			t.Errorf("%s: carries = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// siteBinary builds (once per test binary) a net/http server that starts
// goroutines, as toolchain makes it with args added to go build.
func siteBinary(t *testing.T, toolchain string, args ...string) string {
	t.Helper()
	return program(t, "site", "package main\n\nimport (\n\t\"net/http\"\n\t\"os\"\n)\n\nfunc main() {\n\tif len(os.Args) > 5 {\n\t\thttp.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {\n\t\t\tgo w.Write(nil)\n\t\t}))\n\t}\n}\n", toolchain, args...)
}

// checkCall asserts that the instruction at s is a direct CALL to callee.
func checkCall(t *testing.T, b *Binary, s Site, callee string) {
	t.Helper()
	if s.Callee != callee {
		t.Fatalf("site in %s calls %q, want %q", s.Func.Name, s.Callee, callee)
	}
	code, err := b.Code(s.Func)
	if err != nil {
		t.Fatal(err)
	}
	in, err := x86asm.Decode(code[s.Off:], 64)
	if err != nil {
		t.Fatal(err)
	}
	rel, ok := in.Args[0].(x86asm.Rel)
	want, found := b.Func(callee)
	if in.Op != x86asm.CALL || !ok || !found || s.Func.Entry+s.Off+uint64(in.Len)+uint64(int64(rel)) != want.Entry {
		t.Fatalf("%s+%#x is %v, not a direct CALL %s", s.Func.Name, s.Off, x86asm.GoSyntax(in, s.Func.Entry+s.Off, nil), callee)
	}
}

// TestCallSitesEveryRelease finds the sites in a net/http server
// built by every supported release, and by the newest stripped and as a
// PIE, and checks each is the instruction it stands for.
func TestCallSitesEveryRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program with every supported Go release")
	}
	newest := supportedToolchains[len(supportedToolchains)-1]
	type build struct {
		toolchain string
		args      []string
	}
	var builds []build
	for _, tc := range supportedToolchains {
		builds = append(builds, build{tc, nil})
	}
	builds = append(builds, build{newest, []string{"-ldflags=-s -w"}}, build{newest, []string{"-buildmode=pie"}})
	for _, bd := range builds {
		t.Run(strings.Join(append([]string{bd.toolchain}, bd.args...), " "), func(t *testing.T) {
			b, err := Open(siteBinary(t, bd.toolchain, bd.args...))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()

			s, err := GoCreateSite(b)
			if err != nil {
				t.Fatal(err)
			}
			checkCall(t, b, s, "runtime.runqput")
			t.Logf("newproc.func1+%#x CALL runtime.runqput after: %s", s.Off, strings.Join(s.Between, "; "))

			// newproc1's other callers, which the site does not cover.
			calls, err := CallsTo(b, "runtime.newproc1", "runtime.")
			if err != nil {
				t.Fatal(err)
			}
			var callers []string
			for _, c := range calls {
				callers = append(callers, c.Func.Name)
				// The return address follows a 5-byte CALL rel32 to newproc1.
				checkCall(t, b, Site{Func: c.Func, Off: c.Off - 5, Callee: c.Callee}, "runtime.newproc1")
			}
			if got := strings.Join(callers, " "); got != "runtime.debugCallWrap.func1 runtime.newproc.func1" {
				t.Errorf("callers of newproc1: %s", got)
			}

			s, err = HTTPServeEndSite(b)
			if err != nil {
				t.Fatal(err)
			}
			checkCall(t, b, s, "net/http.(*conn).hijacked")
			indirect := 0
			for _, in := range s.Between {
				if strings.HasPrefix(in, "CALL ") {
					indirect++
				}
			}
			if indirect != 1 { // w.cancelCtx()
				t.Errorf("(*conn).serve: %d indirect calls between ServeHTTP and hijacked, want 1: %q", indirect, s.Between)
			}
			t.Logf("(*conn).serve+%#x CALL hijacked after: %s", s.Off, strings.Join(s.Between, "; "))

			// Every direct caller of serverHandler.ServeHTTP is one whose
			// end the two HTTP sites cover, or one known to need more: a
			// release adding a caller fails here.
			calls, err = CallsTo(b, "net/http.serverHandler.ServeHTTP", "net/http.")
			if err != nil {
				t.Fatal(err)
			}
			known := map[string]string{
				"net/http.(*conn).serve":                     "HTTP/1: HTTPServeEndSite",
				"net/http.initALPNRequest.ServeHTTP":         "HTTP/2 over TLS (x/net's, or net/http's to Go 1.26): its return address",
				"net/http.unencryptedHTTP2Request.ServeHTTP": "HTTP/2 without TLS (Go 1.24+): its return address",
				"net/http.(*serverHandler).ServeHTTP":        "the autogenerated pointer-receiver wrapper (for method tables)",
				"net/http.(*http3ServerHandler).ServeHTTP":   "HTTP/3 hook for x/net (Go 1.27+), not yet open to users: not covered",
			}
			seen := map[string]bool{}
			for _, c := range calls {
				if _, ok := known[c.Func.Name]; !ok {
					t.Errorf("serverHandler.ServeHTTP has an unknown caller %s", c.Func.Name)
				}
				seen[c.Func.Name] = true
			}
			if !seen["net/http.(*conn).serve"] || !seen["net/http.initALPNRequest.ServeHTTP"] {
				t.Errorf("callers of serverHandler.ServeHTTP: %v, want (*conn).serve and initALPNRequest.ServeHTTP among them", seen)
			}
			for name := range seen {
				t.Logf("serverHandler.ServeHTTP called by %s: %s", name, known[name])
			}

			// Go 1.27's HTTP/2 server reaches ServeHTTP through an
			// interface, from http2Handler.ServeHTTP only; no release
			// before stores its address anywhere.
			ind, err := HTTPIndirectEnds(b)
			if err != nil {
				t.Fatal(err)
			}
			if go127 := strings.HasPrefix(bd.toolchain, "go1.27"); !go127 && len(ind) != 0 {
				t.Fatalf("indirect ends before Go 1.27: %+v", ind)
			} else if go127 {
				if len(ind) != 1 || ind[0].Func.Name != "net/http.http2Handler.ServeHTTP" {
					t.Fatalf("indirect ends %+v, want one in http2Handler.ServeHTTP", ind)
				}
				code, err := b.Code(ind[0].Func)
				if err != nil {
					t.Fatal(err)
				}
				in, err := x86asm.Decode(code[ind[0].Call:], 64)
				if err != nil {
					t.Fatal(err)
				}
				if _, reg := in.Args[0].(x86asm.Reg); in.Op != x86asm.CALL || !reg || ind[0].Call+uint64(in.Len) != ind[0].Off {
					t.Fatalf("%s+%#x is %v, not an indirect CALL returning to +%#x", ind[0].Func.Name, ind[0].Call, x86asm.GoSyntax(in, 0, nil), ind[0].Off)
				}
				t.Logf("%s+%#x: %s, returning to +%#x", ind[0].Func.Name, ind[0].Call, x86asm.GoSyntax(in, 0, nil), ind[0].Off)
			}
		})
	}
}

// TestCallSitesNotFound: a program without net/http has neither HTTP site,
// and a function without a call to the callee gives "not found".
func TestCallSitesNotFound(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	b, err := Open(refBinary(t, supportedToolchains[len(supportedToolchains)-1]))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := HTTPServeEndSite(b); !errors.Is(err, ErrNoCallSite) {
		t.Errorf("HTTPServeEndSite without net/http: err = %v, want ErrNoCallSite", err)
	}
	if _, err := HTTPIndirectEnds(b); !errors.Is(err, ErrNoCallSite) {
		t.Errorf("HTTPIndirectEnds without net/http: err = %v, want ErrNoCallSite", err)
	}
	if _, _, err := siteAfter(b, "main.main", "runtime.newproc1", false); !errors.Is(err, ErrNoCallSite) {
		t.Errorf("main.main has no CALL runtime.newproc1: err = %v, want ErrNoCallSite", err)
	}
	if _, err := GoCreateSite(b); err != nil {
		t.Errorf("GoCreateSite: %v", err)
	}
}

func TestMayCall(t *testing.T) {
	// At base 0x1000: NOP; CALL rel32 to 0x1006+0x10 = 0x1016.
	code := []byte{0x90, 0xe8, 0x10, 0x00, 0x00, 0x00, 0xc3}
	if !mayCall(code, 0x1000, 0x1016) {
		t.Error("the CALL to 0x1016 not seen")
	}
	if mayCall(code, 0x1000, 0x1017) || mayCall(code[:5], 0x1000, 0x1016) {
		t.Error("a CALL seen that is not there (other target, cut short)")
	}
	// Backwards: rel32 -0x20 from 0x1006 is 0xfe6.
	back := []byte{0x90, 0xe8, 0xe0, 0xff, 0xff, 0xff}
	if !mayCall(back, 0x1000, 0xfe6) {
		t.Error("a backward CALL not seen")
	}
}

// TestEachCode: eachCode gives every function of the prefix once, in
// address order, with the code Code reads for it alone.
func TestEachCode(t *testing.T) {
	b, err := Open(program(t, "compact", compactSrc, "go1.26.8"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, prefix := range []string{"net/http.", ""} {
		seen := map[string]bool{}
		var last uint64
		err := b.eachCode(prefix, func(f Func, code []byte) error {
			if seen[f.Name] || f.Entry < last {
				t.Fatalf("%s: again, or out of address order", f.Name)
			}
			seen[f.Name], last = true, f.Entry
			alone, err := b.Code(f)
			if err != nil {
				return err
			}
			if !bytes.Equal(code, alone) {
				t.Fatalf("%s: code differs from Code's", f.Name)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, n := range b.symbols().names {
			if strings.HasPrefix(n, prefix) {
				want++
			}
		}
		if len(seen) != want || want < 500 {
			t.Errorf("prefix %q: %d functions, want %d (at least 500)", prefix, len(seen), want)
		}
	}
}

package probes

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// supportedToolchains are the newest patch of every release the agent
// supports, oldest first.
var supportedToolchains = []string{"go1.19.13", "go1.20.14", "go1.21.13", "go1.22.12", "go1.23.12",
	"go1.24.13", "go1.25.8", "go1.26.8", "go1.27.0", "go1.27.3"}

// refBinary builds (once per test binary) a small program that starts a
// goroutine with toolchain, with args added to go build.
func refBinary(t *testing.T, toolchain string, args ...string) string {
	t.Helper()
	return program(t, "ref", "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tdone := make(chan int)\n\tgo func() { done <- 1 }()\n\tfmt.Println(<-done)\n}\n", toolchain, args...)
}

// TestGFromCode recovers runtime.g's offsets from the machine code of
// reference programs built by every supported release, normal and PIE,
// and compares them with the same programs' DWARF; the stripped builds
// (which have no DWARF) must give the same offsets.
func TestGFromCode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program with every supported Go release")
	}
	for _, tc := range supportedToolchains {
		t.Run(tc, func(t *testing.T) {
			for _, mode := range [][]string{nil, {"-buildmode=pie"}} {
				b, err := Open(refBinary(t, tc, mode...))
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				goid, okG, err := b.dwarfField("runtime.g", "goid")
				if err != nil || !okG {
					t.Fatalf("%v: DWARF has no runtime.g.goid: %v", mode, err)
				}
				stack, _, _ := b.dwarfField("runtime.g", "stack")
				hi, okH, _ := b.dwarfField("runtime.stack", "hi")
				if !okH {
					t.Fatalf("%v: DWARF has no runtime.stack.hi", mode)
				}
				parent, okP, _ := b.dwarfField("runtime.g", "parentGoid")
				if !okP {
					parent = 0 // Go 1.19 and 1.20
				}
				g, s, p, err := b.gFromCode()
				if err != nil {
					t.Fatalf("%v: %v", mode, err)
				}
				if int64(g) != goid || int64(s) != stack+hi || int64(p) != parent {
					t.Errorf("%v: machine code says goid %d, stack.hi %d, parentGoid %d; DWARF %d, %d, %d", mode, g, s, p, goid, stack+hi, parent)
				}
				sb, err := Open(refBinary(t, tc, append(mode, "-ldflags=-s -w")...))
				if err != nil {
					t.Fatal(err)
				}
				defer sb.Close()
				if sb.HasDWARF {
					t.Fatalf("%v: the stripped build has DWARF", mode)
				}
				g2, s2, p2, err := sb.gFromCode()
				if err != nil {
					t.Fatalf("%v stripped: %v", mode, err)
				}
				if g2 != g || s2 != s || p2 != p {
					t.Errorf("%v stripped: %d, %d, %d; with symbols %d, %d, %d", mode, g2, s2, p2, g, s, p)
				}
			}
		})
	}
}

// TestWitnessesDisagree: witnesses that give different offsets fail the
// recovery instead of one of them being picked.
func TestWitnessesDisagree(t *testing.T) {
	w := &witnesses{name: "g.goid", seen: map[string]int64{}}
	if _, ok, err := w.agreed(); ok || err != nil {
		t.Errorf("no witness: ok %v, err %v", ok, err)
	}
	w.add("printcreatedby", 152)
	w.add("goroutineheader", 152)
	if off, ok, err := w.agreed(); off != 152 || !ok || err != nil {
		t.Errorf("two agreeing witnesses: %d %v %v", off, ok, err)
	}
	w.add("newproc1", 160)
	if _, _, err := w.agreed(); err == nil {
		t.Error("disagreeing witnesses accepted")
	}
}

// TestFlowFollowsSpills: the root pointer survives a spill to the stack
// and a reload, a field load from it is known, and a call forgets every
// register.
func TestFlowFollowsSpills(t *testing.T) {
	code := []byte{
		0x48, 0x89, 0x44, 0x24, 0x50, // MOVQ AX, 0x50(SP)
		0x31, 0xc0, // XORL AX, AX
		0x48, 0x8b, 0x54, 0x24, 0x50, // MOVQ 0x50(SP), DX
		0x48, 0x8b, 0xba, 0x18, 0x01, 0x00, 0x00, // MOVQ 0x118(DX), DI
	}
	f := newFlow(x86asm.RAX)
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			t.Fatal(err)
		}
		f.step(inst)
		off += inst.Len
	}
	if o := f.regs[x86asm.RDI]; o.kind != field || o.off != 0x118 {
		t.Errorf("DI = %+v, want the field at 0x118", o)
	}
	if o := f.regs[x86asm.RAX]; o.kind != unknown {
		t.Errorf("AX after XORL = %+v, want unknown", o)
	}
	f.step(x86asm.Inst{Op: x86asm.CALL, Args: x86asm.Args{x86asm.Rel(0)}})
	if o := f.regs[x86asm.RDI]; o.kind != unknown {
		t.Errorf("DI after a call = %+v, want unknown", o)
	}
}

// TestTableContradicted: a stripped go1.23 binary whose version string
// says go1.26 (whose g differs) gets no offsets: the table's entry for the
// claimed release is not what its machine code uses. Renamed to a release
// the table does not know, the machine code gives go1.23's offsets.
func TestTableContradicted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program with go1.23")
	}
	data, err := os.ReadFile(refBinary(t, "go1.23.12", "-ldflags=-s -w"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		claim  string
		source string
	}{{"go1.26.12", ""}, {"go1.29.12", "machine code"}} {
		path := filepath.Join(t.TempDir(), "claims-"+c.claim)
		if err := os.WriteFile(path, bytes.ReplaceAll(data, []byte("go1.23.12"), []byte(c.claim)), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := b.Runtime()
		b.Close()
		if b.GoVersion != c.claim {
			t.Fatalf("read as %s, want %s", b.GoVersion, c.claim)
		}
		switch {
		case c.source == "" && err == nil:
			t.Errorf("%s: offsets %+v, want an error: the table contradicts the code", c.claim, rt)
		case c.source != "" && (err != nil || rt.Source != c.source || rt.GoidOffset != 160 || rt.ParentGoidOffset != 280):
			t.Errorf("%s: %+v, %v; want go1.23's offsets (160, 280) from %s", c.claim, rt, err, c.source)
		}
	}
}

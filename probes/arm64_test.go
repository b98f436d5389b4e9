package probes

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/arm64/arm64asm"
)

// arm64Src has the shapes of arm64 prologue and epilogue Place must tell
// apart: a method with two RETs and a small frame (CMP SP), a leaf with no
// frame and no stack check, a frame too big for CMP SP (SUBS/BCC, then CMP
// R17), a medium frame (SUB into R17), a closure, and a function of many
// integer arguments (the arm64 ABI has 16 registers for them).
const arm64Src = `package main

import (
	"fmt"
	"os"
)

type S struct{ m map[string]string }

func (s *S) Get(k string) (string, error) {
	if v, ok := s.m[k]; ok {
		return v, nil
	}
	return "", fmt.Errorf("no %s", k)
}

//go:noinline
func leaf(a, b int) int { return a + b }

//go:noinline
func big(n int) int {
	var buf [100000]byte
	buf[n] = 1
	return int(buf[n/2]) + n
}

//go:noinline
func medium(n int) int {
	var buf [3000]byte
	buf[n] = 2
	return int(buf[n/3]) + len(fmt.Sprint(n))
}

//go:noinline
func many(a, b, c, d, e, f, g, h, i, j, k int) int {
	return a + b + c + d + e + f + g + h + i + j + k + len(fmt.Sprint(k))
}

func main() {
	s := &S{m: map[string]string{"a": "b"}}
	v, err := s.Get(os.Args[0])
	done := make(chan int)
	go func() { done <- leaf(1, 2) }()
	fmt.Println(v, err, <-done, big(3), medium(4), many(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11))
}
`

// arm64Funcs are checked in every build: the program's own and the runtime
// functions CompileRuntime places probes on.
var arm64Funcs = []string{"main.(*S).Get", "main.leaf", "main.big", "main.medium", "main.many", "main.main", "main.main.func1",
	"runtime.newproc1", "runtime.goexit1", "runtime.gopanic"}

// objdumpPlacement is an independent reading of fn's probe offsets from
// `go tool objdump`'s text (Go's own arm64 disassembler, not
// golang.org/x/arch's decoder Place uses): every RET, and the entry on
// the first BLS when the function starts by loading g.stackguard0 from
// 16(R28).
func objdumpPlacement(t *testing.T, bin, fn string) (entry uint64, rets []uint64) {
	t.Helper()
	addrs, texts := objdumpText(t, bin, fn)
	if len(addrs) == 0 {
		t.Fatalf("objdump %s: no %s", bin, fn)
	}
	for i, text := range texts {
		if text == "RET" || strings.HasPrefix(text, "RET ") {
			rets = append(rets, addrs[i])
		}
	}
	if !strings.HasPrefix(texts[0], "MOVD 16(R28), ") {
		return 0, rets
	}
	for i := 1; i < len(texts) && i < 8; i++ {
		if strings.HasPrefix(texts[i], "BLS ") {
			return addrs[i], rets
		}
	}
	t.Fatalf("objdump %s: %s loads g.stackguard0 but has no BLS in its prologue: %q", bin, fn, texts)
	return 0, nil
}

// TestPlaceARM64 checks Place on arm64 binaries built on this (x86-64)
// host, by Go 1.22, 1.26 and 1.27 (the kernel tests' releases), as plain
// executables and as stripped position-independent ones, against objdump's
// disassembly: the entry on the stack check's branch (0 without one), and
// every RET. A stripped binary has no symbols for objdump, so its
// functions' code is checked to be an unstripped twin's, which objdump
// reads: the same instructions, the same bytes but where data addresses
// differ (Go 1.26 lays out a stripped build's data elsewhere).
func TestPlaceARM64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arm64 programs with two Go releases")
	}
	t.Setenv("GOARCH", "arm64")
	for _, tc := range []string{"go1.22.12", "go1.26.8", "go1.27.3"} {
		t.Run(tc, func(t *testing.T) {
			plain := program(t, "arm64place", arm64Src, tc)
			twin := program(t, "arm64place", arm64Src, tc, "-buildmode=pie")
			stripped := program(t, "arm64place", arm64Src, tc, "-buildmode=pie", "-ldflags=-s -w")
			for _, c := range []struct{ bin, dump string }{{plain, plain}, {stripped, twin}} {
				b, err := Open(c.bin)
				if err != nil {
					t.Fatal(err)
				}
				d, err := Open(c.dump)
				if err != nil {
					t.Fatal(err)
				}
				if b.Arch != ARM64 || (c.bin == stripped) != (b.PIE && b.Stripped) {
					t.Fatalf("%s: arch %v, pie %v, stripped %v", c.bin, b.Arch, b.PIE, b.Stripped)
				}
				stacks := 0
				for _, name := range arm64Funcs {
					fn, ok := b.Func(name)
					if !ok {
						t.Fatalf("%s: no %s", c.bin, name)
					}
					code, err := b.Code(fn)
					if err != nil {
						t.Fatal(err)
					}
					dfn, _ := d.Func(name)
					if dcode, err := d.Code(dfn); err != nil || !sameCodeButData(code, dcode) {
						t.Fatalf("%s: %s's code differs from its twin %s's (%v)", c.bin, name, c.dump, err)
					}
					pl, err := Place(ARM64, code)
					if err != nil {
						t.Fatalf("%s: %s: %v", c.bin, name, err)
					}
					entry, rets := objdumpPlacement(t, c.dump, name)
					got := slices.Clone(pl.Returns)
					if pl.EntryIsReturn {
						got = append(got, pl.Entry)
						slices.Sort(got)
					}
					if pl.Entry != entry || !slices.Equal(got, rets) || pl.Dedup {
						t.Errorf("%s: %s: Place: entry +%d, RETs %v, dedup %v; objdump: entry +%d, RETs %v",
							c.bin, name, pl.Entry, got, pl.Dedup, entry, rets)
					}
					if pl.StackCheck != (entry != 0) || pl.EntryOnCheck != pl.StackCheck {
						t.Errorf("%s: %s: stack check %v, entry on its branch %v, objdump's entry +%d", c.bin, name, pl.StackCheck, pl.EntryOnCheck, entry)
					}
					if pl.StackCheck {
						stacks++
					}
				}
				if stacks < len(arm64Funcs)-2 {
					t.Errorf("%s: only %d of %d functions check their stack", c.bin, stacks, len(arm64Funcs))
				}
			}
		})
	}
}

// TestSignatureARM64 lays out arguments by the arm64 ABI: sixteen integer
// registers, so the eleven ints of main.many are all in registers, where
// amd64 puts the last two on the stack.
func TestSignatureARM64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an arm64 program")
	}
	t.Setenv("GOARCH", "arm64")
	b, err := Open(program(t, "arm64place", arm64Src, "go1.27.3"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := b.SignatureFromDWARF("main.many")
	if err != nil || sig == nil {
		t.Fatalf("main.many: %v, %v", sig, err)
	}
	for i, p := range sig.Params {
		if p.OnStack || !slices.Equal(p.Regs, []uint8{uint8(i)}) {
			t.Errorf("arm64 main.many arg%d: regs %v, on stack %v; want register %d", i, p.Regs, p.OnStack, i)
		}
	}
	src := "func(a, b, c, d, e, f, g, h, i, j, k int, s string) (x, y string)"
	for _, c := range []struct {
		arch  Arch
		stack int // the first argument on the stack
	}{{AMD64, 9}, {ARM64, 16}} {
		sig, err := ParseSignature(c.arch, src)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range sig.Params {
			got = append(got, fmt.Sprint(p.Regs, p.OnStack))
		}
		for i, p := range sig.Params {
			want := i >= c.stack || (c.arch == AMD64 && i == 11)
			if p.OnStack != want {
				t.Errorf("%v: arg%d on stack %v, want %v (%v)", c.arch, i, p.OnStack, want, got)
			}
		}
		if s := sig.Params[11]; c.arch == ARM64 && !slices.Equal(s.Regs, []uint8{11, 12}) {
			t.Errorf("arm64: the string argument in %v, want R11, R12", s.Regs)
		}
		if !slices.Equal(sig.Results[0].Regs, []uint8{0, 1}) || !slices.Equal(sig.Results[1].Regs, []uint8{2, 3}) {
			t.Errorf("%v: results in %v, %v", c.arch, sig.Results[0].Regs, sig.Results[1].Regs)
		}
	}
}

// sameCodeButData reports whether a and b are the same arm64 code but for
// data addresses: an instruction whose bytes differ must be the same
// operation, and no branch (where Place looks).
func sameCodeButData(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for off := 0; off+arm64Inst <= len(a); off += arm64Inst {
		if bytes.Equal(a[off:off+arm64Inst], b[off:off+arm64Inst]) {
			continue
		}
		x, err1 := arm64asm.Decode(a[off:])
		y, err2 := arm64asm.Decode(b[off:])
		if err1 != nil || err2 != nil || x.Op != y.Op {
			return false
		}
		switch x.Op {
		case arm64asm.B, arm64asm.BL, arm64asm.BR, arm64asm.BLR, arm64asm.RET, arm64asm.CBZ, arm64asm.CBNZ, arm64asm.TBZ, arm64asm.TBNZ:
			return false
		}
	}
	return true
}

// objdumpText returns each instruction of fn in bin as go tool objdump
// prints it: its offset in fn and its text.
func objdumpText(t *testing.T, bin, fn string) (offs []uint64, texts []string) {
	t.Helper()
	out, err := exec.Command("go", "tool", "objdump", "-s", "^"+regexp.QuoteMeta(fn)+"$", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool objdump %s %s: %v\n%s", bin, fn, err, out)
	}
	var start uint64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "TEXT ") {
			if len(offs) > 0 {
				t.Fatalf("objdump %s: more than one function matches %s", bin, fn)
			}
			continue
		}
		var fields []string
		for _, f := range strings.Split(line, "\t") {
			if f = strings.TrimSpace(f); f != "" {
				fields = append(fields, f)
			}
		}
		if len(fields) < 4 {
			continue
		}
		addr, err := strconv.ParseUint(strings.TrimPrefix(fields[1], "0x"), 16, 64)
		if err != nil {
			t.Fatalf("objdump line %q: %v", line, err)
		}
		if len(offs) == 0 {
			start = addr
		}
		offs = append(offs, addr-start)
		texts = append(texts, fields[3])
	}
	return offs, texts
}

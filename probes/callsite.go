package probes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// ErrNoCallSite says a caller has no direct CALL reached straight-line after
// its CALL to the given callee; the probe then stays on the callee's RETs.
var ErrNoCallSite = errors.New("call site not found")

// CallAfter finds, in a caller's code loaded at address base, the first
// direct CALL rel32 after the first direct CALL to callee, and returns its
// offset from base and its target. A uprobe on a direct CALL is emulated by
// the kernel, a RET is single-stepped, so this site ends the callee's call
// far more cheaply. The path between the two calls must be straight-line:
// any jump, conditional branch, indirect call or RET between them means the
// site may not be reached after every return, so it is refused.
func CallAfter(code []byte, base, callee uint64) (off, target uint64, err error) {
	insts, err := disassemble(code)
	if err != nil {
		return 0, 0, err
	}
	_, site, err := callAfter(insts, base, callee, false)
	if err != nil {
		return 0, 0, err
	}
	t, _ := insts[site].target(base)
	return uint64(insts[site].off), t, nil
}

// Site is a probe site found by disassembly at attach: an instruction the
// kernel emulates (a direct CALL, or the PUSHQ BP of a function's entry)
// where a probe sees what a single-stepped RET probe would have seen.
type Site struct {
	// Func holds the site; Off is the site's offset from Func.Entry.
	Func Func
	Off  uint64
	// Callee is the function the CALL at the site calls; empty for an
	// entry site.
	Callee string
	// Between is the code from the return of the call the site stands
	// for up to the site, one instruction a line (Go assembler syntax):
	// what runs after that return and before the probe fires.
	Between []string
	// Call is, for a site of CallsTo, the offset of the CALL itself (Off
	// is its return address).
	Call uint64
	// Dedup is set for an entry site at offset 0 (a function without the
	// PUSHQ BP after its stack check, as Go 1.19 and 1.20 make them): a
	// stack growth re-runs the entry and hits it twice (see Placement).
	Dedup bool
}

// GoCreateSite finds where goroutine creation can be seen without
// runtime.newproc1's RET: in runtime.newproc.func1 (newproc's closure run
// on the system stack) the direct CALL runtime.runqput(pp, newg, true)
// right after CALL runtime.newproc1. newproc1 returns the new g in AX; the
// code between moves it to BX, runqput's second argument register, and this
// checks that nothing between overwrites it, so the probe reads the new g in
// BX. Other callers of newproc1 (runtime.newcoro.func1 for iter.Pull
// coroutines, the debugger's runtime.debugCallWrap.func1) are not covered
// by this site.
func GoCreateSite(b *Binary) (Site, error) {
	s, between, err := siteAfter(b, "runtime.newproc.func1", "runtime.newproc1", false)
	if err != nil {
		return s, err
	}
	if s.Callee != "runtime.runqput" {
		return s, fmt.Errorf("%w: runtime.newproc.func1 calls %s after runtime.newproc1, not runtime.runqput", ErrNoCallSite, s.Callee)
	}
	if !carries(between, x86asm.RAX, x86asm.RBX) {
		return s, fmt.Errorf("%w: runtime.newproc.func1: the new g returned in AX is not in BX at the CALL runtime.runqput", ErrNoCallSite)
	}
	return s, nil
}

// HTTPServeEndSite finds where a net/http server request's handling ends
// without serverHandler.ServeHTTP's RET: in net/http.(*conn).serve the
// first direct CALL after CALL serverHandler.ServeHTTP, which every release
// makes to (*conn).hijacked (`if c.hijacked() { return }`). Between the two
// run `inFlightResponse = nil` and `w.cancelCtx()`, an indirect call of the
// request context's cancel function: the only call allowed between, as it
// returns to this straight-line path.
func HTTPServeEndSite(b *Binary) (Site, error) {
	s, _, err := siteAfter(b, "net/http.(*conn).serve", "net/http.serverHandler.ServeHTTP", true)
	if err != nil {
		return s, err
	}
	if s.Callee != "net/http.(*conn).hijacked" {
		return s, fmt.Errorf("%w: net/http.(*conn).serve calls %s after serverHandler.ServeHTTP, not (*conn).hijacked", ErrNoCallSite, s.Callee)
	}
	return s, nil
}

// CallsTo lists every direct CALL to callee in the functions whose names
// start with prefix (say "runtime." for an unexported runtime function),
// each as the site the callee returns to: Off is the return address's offset
// in the caller. A probe there is single-stepped like a RET, but sees one
// caller's returns only: the fallback for callers without an emulated site
// (GoCreateSite covers newproc.func1 only).
func CallsTo(b *Binary, callee, prefix string) ([]Site, error) {
	if b.Arch != AMD64 {
		return nil, errX86Only(b.Arch, "the calls of "+callee)
	}
	cf, ok := b.Func(callee)
	if !ok {
		return nil, fmt.Errorf("%w: no %s in %s", ErrNoCallSite, callee, b.Path)
	}
	var sites []Site
	err := b.eachCode(prefix, func(fn Func, code []byte) error {
		// Most functions call no such callee: a scan of the bytes for a
		// CALL rel32 that could reach it spares disassembling them (the
		// runtime has some 1,500 functions); a hit is then checked on the
		// real instructions.
		if !mayCall(code, fn.Entry, cf.Entry) {
			return nil
		}
		insts, err := disassemble(code)
		if err != nil {
			return fmt.Errorf("%s: %w", fn.Name, err)
		}
		for _, in := range insts {
			if t, ok := in.target(fn.Entry); ok && t == cf.Entry {
				sites = append(sites, Site{Func: fn, Off: uint64(in.off + in.Len), Call: uint64(in.off), Callee: callee})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// By caller's name, then in code order.
	slices.SortStableFunc(sites, func(x, y Site) int { return strings.Compare(x.Func.Name, y.Func.Name) })
	return sites, nil
}

// siteAfter finds the first direct CALL after caller's only direct CALL to
// callee (see callAfter) and names its target. It also returns the
// instructions between the two calls.
func siteAfter(b *Binary, caller, callee string, allowIndirect bool) (Site, []inst, error) {
	fn, ok := b.Func(caller)
	if !ok {
		return Site{}, nil, fmt.Errorf("%w: no %s in %s", ErrNoCallSite, caller, b.Path)
	}
	cf, ok := b.Func(callee)
	if !ok {
		return Site{}, nil, fmt.Errorf("%w: no %s in %s", ErrNoCallSite, callee, b.Path)
	}
	insts, err := b.disassemble(fn)
	if err != nil {
		return Site{}, nil, err
	}
	if n := countCalls(insts, fn.Entry, cf.Entry); n != 1 {
		// Every return of the callee must reach the one site.
		return Site{}, nil, fmt.Errorf("%w: %s calls %s %d times, not once", ErrNoCallSite, caller, callee, n)
	}
	call, site, err := callAfter(insts, fn.Entry, cf.Entry, allowIndirect)
	if err != nil {
		return Site{}, nil, fmt.Errorf("%s after %s: %w", caller, callee, err)
	}
	t, _ := insts[site].target(fn.Entry)
	name, ok := b.funcAt(t)
	if !ok {
		return Site{}, nil, fmt.Errorf("%w: %s calls %#x after %s, which is no function's entry", ErrNoCallSite, caller, t, callee)
	}
	s := Site{Func: fn, Off: uint64(insts[site].off), Callee: name}
	for _, in := range insts[call+1 : site] {
		s.Between = append(s.Between, x86asm.GoSyntax(in.Inst, fn.Entry+uint64(in.off), nil))
	}
	return s, insts[call+1 : site], nil
}

// inst is one decoded instruction and its offset in the function.
type inst struct {
	x86asm.Inst
	off int
}

func disassemble(code []byte) ([]inst, error) {
	var insts []inst
	for o := 0; o < len(code); {
		in, err := x86asm.Decode(code[o:], 64)
		if err != nil {
			return nil, fmt.Errorf("disassemble at +%#x: %w", o, err)
		}
		insts = append(insts, inst{in, o})
		o += in.Len
	}
	return insts, nil
}

func (b *Binary) disassemble(fn Func) ([]inst, error) {
	if b.Arch != AMD64 {
		return nil, errX86Only(b.Arch, fn.Name)
	}
	code, err := b.Code(fn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name, err)
	}
	insts, err := disassemble(code)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name, err)
	}
	return insts, nil
}

// target is the destination of a direct CALL, in a function at base; false
// for any other instruction.
func (in inst) target(base uint64) (uint64, bool) {
	rel, ok := in.Args[0].(x86asm.Rel)
	if in.Op != x86asm.CALL || !ok {
		return 0, false
	}
	return uint64(int64(base) + int64(in.off) + int64(in.Len) + int64(rel)), true
}

// callAfter returns the indexes of the first direct CALL to callee and of
// the first direct CALL after it, refusing a path between them that may
// not reach the second: a jump, conditional branch, RET, and (unless
// allowIndirect) an indirect call.
func callAfter(insts []inst, base, callee uint64, allowIndirect bool) (call, site int, err error) {
	call = -1
	for i, in := range insts {
		t, direct := in.target(base)
		switch {
		case direct && call >= 0:
			return call, i, nil
		case direct && t == callee:
			call = i
		case call >= 0 && in.Op == x86asm.CALL && allowIndirect:
		case call >= 0 && (in.Op == x86asm.CALL || in.Op == x86asm.RET || in.Op.String()[0] == 'J' || in.Op == x86asm.LOOP):
			return 0, 0, fmt.Errorf("%w: %v at +%#x between the calls", ErrNoCallSite, in.Op, in.off)
		}
	}
	return 0, 0, ErrNoCallSite
}

func countCalls(insts []inst, base, callee uint64) int {
	n := 0
	for _, in := range insts {
		if t, ok := in.target(base); ok && t == callee {
			n++
		}
	}
	return n
}

// carries reports whether the value in register from at the start of
// insts is in register to after them. Only moves between registers carry
// it; any other write to a register that holds it loses it. Instructions
// whose effect on registers this does not model refuse the whole path,
// so a true answer is never a guess.
func carries(insts []inst, from, to x86asm.Reg) bool {
	holds := map[x86asm.Reg]bool{from: true}
	for _, in := range insts {
		switch in.Op {
		case x86asm.NOP, x86asm.CMP, x86asm.TEST:
			continue // no register written
		case x86asm.MOV, x86asm.LEA, x86asm.XOR, x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD:
		default:
			return false
		}
		dst, ok := in.Args[0].(x86asm.Reg)
		if !ok {
			if _, mem := in.Args[0].(x86asm.Mem); mem && in.Op == x86asm.MOV {
				continue // a store: no register written
			}
			return false
		}
		full, ok := reg64(dst)
		if !ok {
			return false
		}
		src, isReg := in.Args[1].(x86asm.Reg)
		holds[full] = in.Op == x86asm.MOV && isReg && src == full64(src) && holds[src] && dst == full
	}
	return holds[to]
}

// full64 returns r when it is a 64-bit general register, else 0.
func full64(r x86asm.Reg) x86asm.Reg {
	if r >= x86asm.RAX && r <= x86asm.R15 {
		return r
	}
	return 0
}

// reg64 returns the 64-bit general register that r is part of.
func reg64(r x86asm.Reg) (x86asm.Reg, bool) {
	switch {
	case r >= x86asm.RAX && r <= x86asm.R15:
		return r, true
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return x86asm.RAX + (r - x86asm.EAX), true
	case r >= x86asm.AX && r <= x86asm.R15W:
		return x86asm.RAX + (r - x86asm.AX), true
	case r >= x86asm.AL && r <= x86asm.BL:
		return x86asm.RAX + (r - x86asm.AL), true
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return x86asm.RSP + (r - x86asm.SPB), true
	}
	return 0, false
}

// funcAt names the function whose entry is addr.
func (b *Binary) funcAt(addr uint64) (string, bool) {
	for name, fn := range b.symbols().funcs {
		if fn.Entry == addr && !strings.HasSuffix(name, ".abi0") {
			return name, true
		}
	}
	return "", false
}

// mayCall reports whether code, at base, holds the bytes of a direct
// CALL rel32 (E8) to target at any offset: a superset of its real CALLs.
func mayCall(code []byte, base, target uint64) bool {
	return mayBranch(code, base, target, 0xe8, 4)
}

// mayJump reports whether code, at base, holds the bytes of a direct JMP
// to target at any offset: rel32 (E9), rel8 (EB) or, with an operand-size
// prefix, rel16 (66 E9). A superset of its real JMPs: whatever prefixes
// precede an opcode, the jump counts from the end of the displacement that
// follows it.
func mayJump(code []byte, base, target uint64) bool {
	return mayBranch(code, base, target, 0xe9, 4) || mayBranch(code, base, target, 0xeb, 1) || mayBranch(code, base, target, 0xe9, 2)
}

// mayBranch reports whether code, at base, holds the byte op followed by a
// signed little-endian displacement of size bytes that reaches target.
func mayBranch(code []byte, base, target uint64, op byte, size int) bool {
	for i := 0; i+1+size <= len(code); i++ {
		if code[i] != op {
			continue
		}
		var rel int64
		switch size {
		case 1:
			rel = int64(int8(code[i+1]))
		case 2:
			rel = int64(int16(binary.LittleEndian.Uint16(code[i+1:])))
		default:
			rel = int64(int32(binary.LittleEndian.Uint32(code[i+1:])))
		}
		if base+uint64(i+1+size)+uint64(rel) == target {
			return true
		}
	}
	return false
}

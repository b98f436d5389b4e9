package probes

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Recovering runtime.g's offsets from the runtime's own machine code, for a
// binary that has no DWARF and whose release the table does not know (a
// release newer than this agent). Every offset comes from a runtime
// function that pclntab finds in a stripped binary too, and that reads or
// writes the field in a way only that field is read or written, in every
// release from Go 1.19 to 1.27:
//
//	printcreatedby(gp)  `gp.goid != 1`                  → CMP [gp+goid], 1
//	                    printcreatedby1(f, pc, gp.parentGoid) (1.21+)
//	                                                    → RDI = [gp+parentGoid] at the call
//	goroutineheader(gp) print("goroutine ", gp.goid)    → RAX = [gp+goid] at printuint/printint
//	newproc1(fn, callergp, …)  newg.parentGoid = callergp.goid (1.21+)
//	                                                    → [newg+parentGoid] = [callergp+goid]
//	gfput(pp, gp)       stackfree(gp.stack)             → RAX = [gp+lo], RBX = [gp+lo+8] at the call
//
// Each is a witness; a field needs one, and witnesses that disagree make
// the recovery fail: an offset is never guessed.

// origin is what a register or stack slot is known to hold: the root
// pointer (a *g argument), a field loaded from it at off, or nothing known.
type origin struct {
	kind uint8 // unknown, root or field
	off  int64
}

const (
	unknown = iota
	root
	field
)

// flow tracks, instruction by instruction in address order, which
// registers and stack slots hold the root pointer or a field read from it.
// It ignores branches: the witnesses above are straight-line code, and a
// wrong reading elsewhere shows up as a disagreement.
type flow struct {
	regs  map[x86asm.Reg]origin
	slots map[int64]origin // by displacement from SP
}

func newFlow(rootReg x86asm.Reg) *flow {
	return &flow{regs: map[x86asm.Reg]origin{rootReg: {kind: root}}, slots: map[int64]origin{}}
}

// mem returns the origin of the 8 bytes at m, and whether m is a plain
// base+displacement operand.
func (f *flow) mem(m x86asm.Mem) (origin, bool) {
	if m.Index != 0 || m.Segment != 0 {
		return origin{}, false
	}
	if m.Base == x86asm.RSP {
		return f.slots[m.Disp], true
	}
	if f.regs[canon(m.Base)].kind == root {
		return origin{kind: field, off: m.Disp}, true
	}
	return origin{}, true
}

// step applies inst to the tracked state.
func (f *flow) step(inst x86asm.Inst) {
	if inst.Op == x86asm.CALL {
		f.regs = map[x86asm.Reg]origin{} // the callee may change any register
		return
	}
	dst, _ := inst.Args[0].(x86asm.Reg)
	if inst.Op == x86asm.MOV && inst.MemBytes <= 8 {
		switch a := inst.Args[0].(type) {
		case x86asm.Reg:
			if !is64(a) {
				break
			}
			switch b := inst.Args[1].(type) {
			case x86asm.Reg:
				f.regs[a] = f.regs[canon(b)]
				if !is64(b) {
					f.regs[a] = origin{}
				}
				return
			case x86asm.Mem:
				if o, ok := f.mem(b); ok && inst.MemBytes == 8 {
					f.regs[a] = o
					return
				}
			}
		case x86asm.Mem:
			if a.Base == x86asm.RSP && a.Index == 0 {
				o := origin{}
				if r, ok := inst.Args[1].(x86asm.Reg); ok && is64(r) {
					o = f.regs[r]
				}
				f.slots[a.Disp] = o
			}
			return
		}
	}
	switch inst.Op {
	case x86asm.CMP, x86asm.TEST, x86asm.PUSH, x86asm.JMP, x86asm.RET, x86asm.NOP:
		return
	case x86asm.MUL, x86asm.IMUL, x86asm.DIV, x86asm.IDIV, x86asm.CQO, x86asm.CDQ:
		f.regs[x86asm.RAX], f.regs[x86asm.RDX] = origin{}, origin{}
	case x86asm.XCHG, x86asm.XADD, x86asm.CMPXCHG:
		f.regs[x86asm.RAX] = origin{}
		if r, ok := inst.Args[1].(x86asm.Reg); ok {
			f.regs[canon(r)] = origin{}
		}
	}
	if m, ok := inst.Args[0].(x86asm.Mem); ok && m.Base == x86asm.RSP {
		f.slots[m.Disp] = origin{} // a store we do not follow
	}
	if dst != 0 {
		f.regs[canon(dst)] = origin{}
	}
	if isStringOp(inst) {
		f.regs[x86asm.RDI], f.regs[x86asm.RSI], f.regs[x86asm.RCX] = origin{}, origin{}, origin{}
	}
}

func isStringOp(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.MOVSB, x86asm.MOVSQ, x86asm.MOVSD, x86asm.STOSB, x86asm.STOSQ, x86asm.STOSD:
		return true
	}
	return false
}

func is64(r x86asm.Reg) bool { return r >= x86asm.RAX && r <= x86asm.R15 }

// canon maps a register to the 64-bit register it is part of.
func canon(r x86asm.Reg) x86asm.Reg {
	switch {
	case r >= x86asm.AL && r <= x86asm.R15B:
		if r >= x86asm.SPB && r <= x86asm.DIB {
			return x86asm.RSP + (r - x86asm.SPB)
		}
		if r >= x86asm.AH && r <= x86asm.BH {
			return x86asm.RAX + (r - x86asm.AH)
		}
		if r <= x86asm.BL {
			return x86asm.RAX + (r - x86asm.AL)
		}
		return x86asm.R8 + (r - x86asm.R8B)
	case r >= x86asm.AX && r <= x86asm.R15W:
		return x86asm.RAX + (r - x86asm.AX)
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return x86asm.RAX + (r - x86asm.EAX)
	}
	return r
}

// walk disassembles the function named name, tracking rootReg from its
// entry, and calls visit before each instruction is applied, with the
// instruction's call target (0 when it is not a direct call).
func (b *Binary) walk(name string, rootReg x86asm.Reg, visit func(inst x86asm.Inst, f *flow, target uint64)) error {
	fn, ok := b.Func(name)
	if !ok {
		return fmt.Errorf("no %s", name)
	}
	code, err := b.Code(fn)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	f := newFlow(rootReg)
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return fmt.Errorf("%s: disassemble at +%#x: %w", name, off, err)
		}
		var target uint64
		if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op == x86asm.CALL {
			target = fn.Entry + uint64(off) + uint64(inst.Len) + uint64(int64(rel))
		}
		visit(inst, f, target)
		f.step(inst)
		off += inst.Len
	}
	return nil
}

// witnesses collects what each function says about one field.
type witnesses struct {
	name string
	seen map[string]int64 // witness → offset
}

func (w *witnesses) add(by string, off int64) {
	if _, dup := w.seen[by]; !dup {
		w.seen[by] = off
	}
}

// agreed returns the offset every witness gives, ok false when there is
// none, an error when they disagree.
func (w *witnesses) agreed() (int64, bool, error) {
	var off int64
	first := ""
	for by, o := range w.seen {
		if first == "" {
			off, first = o, by
			continue
		}
		if o != off {
			return 0, false, fmt.Errorf("%s: %s says %d, %s says %d", w.name, first, off, by, o)
		}
	}
	return off, first != "", nil
}

// gFromCode recovers runtime.g's goid, stack.hi and parentGoid offsets
// from the runtime's machine code. parentGoid is 0 when the release's g has
// none (Go 1.19 and 1.20), which is told by both its witnesses finding
// nothing.
func (b *Binary) gFromCode() (goid, stackHi, parentGoid uint16, err error) {
	if b.Arch != AMD64 {
		return 0, 0, 0, fmt.Errorf("runtime.g's offsets are read from x86-64 machine code only, not %s", b.Arch)
	}
	goids := &witnesses{name: "g.goid", seen: map[string]int64{}}
	parents := &witnesses{name: "g.parentGoid", seen: map[string]int64{}}
	stacks := &witnesses{name: "g.stack.hi", seen: map[string]int64{}}
	entry := func(name string) uint64 {
		if fn, ok := b.Func(name); ok {
			return fn.Entry
		}
		return 0
	}
	isField := func(o origin) bool { return o.kind == field && o.off > 0 && o.off < 1<<12 }

	createdBy1 := entry("runtime.printcreatedby1")
	err = b.walk("runtime.printcreatedby", x86asm.RAX, func(inst x86asm.Inst, f *flow, target uint64) {
		if inst.Op == x86asm.CMP && inst.MemBytes == 8 {
			if m, ok := inst.Args[0].(x86asm.Mem); ok {
				if o, ok := f.mem(m); ok && isField(o) && inst.Args[1] == x86asm.Imm(1) {
					goids.add("printcreatedby", o.off)
				}
			}
		}
		if target != 0 && target == createdBy1 && isField(f.regs[x86asm.RDI]) {
			parents.add("printcreatedby", f.regs[x86asm.RDI].off)
		}
	})
	if err != nil {
		return 0, 0, 0, err
	}
	printInt, printUint := entry("runtime.printint"), entry("runtime.printuint")
	printed := false
	err = b.walk("runtime.goroutineheader", x86asm.RAX, func(inst x86asm.Inst, f *flow, target uint64) {
		if printed || target == 0 || target != printInt && target != printUint {
			return
		}
		printed = true // the first number printed is the id
		if isField(f.regs[x86asm.RAX]) {
			goids.add("goroutineheader", f.regs[x86asm.RAX].off)
		}
	})
	if err != nil {
		return 0, 0, 0, err
	}
	g, ok, err := goids.agreed()
	if err != nil {
		return 0, 0, 0, err
	}
	if !ok {
		return 0, 0, 0, fmt.Errorf("g.goid: no witness in printcreatedby or goroutineheader")
	}
	// newproc1(fn, callergp, …): callergp in RBX; newg.parentGoid =
	// callergp.goid stores the caller's id into the new g.
	err = b.walk("runtime.newproc1", x86asm.RBX, func(inst x86asm.Inst, f *flow, target uint64) {
		if inst.Op != x86asm.MOV || inst.MemBytes != 8 {
			return
		}
		m, ok := inst.Args[0].(x86asm.Mem)
		r, isReg := inst.Args[1].(x86asm.Reg)
		if !ok || !isReg || !is64(r) || m.Base == x86asm.RSP || m.Index != 0 || m.Disp <= 0 || m.Disp >= 1<<12 {
			return
		}
		if o := f.regs[r]; o.kind == field && o.off == g && f.regs[canon(m.Base)].kind != root {
			parents.add("newproc1", m.Disp)
		}
	})
	if err != nil {
		return 0, 0, 0, err
	}
	// gfput(pp, gp): gp in RBX; stackfree(gp.stack) passes lo in RAX, hi
	// in RBX.
	stackFree := entry("runtime.stackfree")
	err = b.walk("runtime.gfput", x86asm.RBX, func(inst x86asm.Inst, f *flow, target uint64) {
		if target == 0 || target != stackFree {
			return
		}
		lo, hi := f.regs[x86asm.RAX], f.regs[x86asm.RBX]
		if lo.kind == field && hi.kind == field && hi.off == lo.off+8 {
			stacks.add("gfput", hi.off)
		}
	})
	if err != nil {
		return 0, 0, 0, err
	}
	s, ok, err := stacks.agreed()
	if err != nil {
		return 0, 0, 0, err
	}
	if !ok {
		return 0, 0, 0, fmt.Errorf("g.stack.hi: no witness in gfput")
	}
	p, ok, err := parents.agreed()
	if err != nil {
		return 0, 0, 0, err
	}
	if ok && len(parents.seen) < 2 {
		// One witness that sees a parent id, one that does not: the code
		// is not what this reading expects.
		return 0, 0, 0, fmt.Errorf("g.parentGoid: only %v found it", parents.seen)
	}
	if !ok {
		p = 0
	}
	if g == p || g == s || p == s {
		return 0, 0, 0, fmt.Errorf("g.goid %d, g.parentGoid %d and g.stack.hi %d overlap", g, p, s)
	}
	return uint16(g), uint16(s), uint16(p), nil
}

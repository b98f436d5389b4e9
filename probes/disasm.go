package probes

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Placement is where a function's probes go.
type Placement struct {
	// Entry is the entry probe's offset from the function's start: on
	// amd64 the instruction right after the stack-bound check when there is
	// one (morestack's re-run of the prologue does not reach it twice; only
	// a PUSHQ BP, which the kernel emulates, so the probe costs a fraction
	// of a single-stepped one); on arm64 the check's branch itself (see
	// EntryOnCheck); else 0.
	Entry uint64
	// EntryOnCheck is set when Entry is the stack check's conditional
	// branch to morestack (arm64's B.LS). The kernel simulates a branch in
	// the trap, where it would single-step the frame setup after it out of
	// line (two traps, and a window in which arm64's kernel was seen to
	// restart the stepped instruction and run the probe twice for one
	// call); and the program sees the flags the branch tests: a hit whose
	// branch is taken, the first run of a prologue that morestack will
	// run again, is dropped there (counted as a prologue re-run), so
	// each call still starts once.
	EntryOnCheck bool
	// Dedup is set when the entry probe sits where a prologue re-run hits it
	// again: the BPF side then drops the second hit.
	Dedup bool
	// StackCheck reports whether the function checks its stack bound.
	StackCheck bool
	// Returns are the offsets of every RET instruction, except one at the
	// entry offset (see EntryIsReturn).
	Returns []uint64
	// EntryIsReturn is set when the instruction at Entry is a RET: one probe
	// there sees the whole call.
	EntryIsReturn bool
}

// Place disassembles code (a whole function of an a binary) and finds its
// probe offsets.
func Place(a Arch, code []byte) (Placement, error) {
	place := placeAMD64
	if a == ARM64 {
		place = placeARM64
	}
	pl, err := place(code)
	if err != nil {
		return pl, err
	}
	for i, r := range pl.Returns {
		if r == pl.Entry {
			pl.EntryIsReturn = true
			pl.Returns = append(pl.Returns[:i:i], pl.Returns[i+1:]...)
			break
		}
	}
	return pl, nil
}

func placeAMD64(code []byte) (Placement, error) {
	var pl Placement
	var insts []x86asm.Inst
	var offs []uint64
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return pl, fmt.Errorf("disassemble at +%#x: %w", off, err)
		}
		insts = append(insts, inst)
		offs = append(offs, uint64(off))
		if inst.Op == x86asm.RET {
			pl.Returns = append(pl.Returns, uint64(off))
		}
		off += inst.Len
	}
	// The split-stack prologue compares SP (or, for big frames, SP minus
	// the frame size computed in R12 by a few instructions) with
	// g.stackguard0 at 0x10(R14), then jumps to the morestack call at the
	// end of the function. The frame setup starts right after it.
	for i := 0; i+1 < len(insts) && i < 6; i++ {
		if insts[i].Op != x86asm.CMP || !readsG(insts[i]) || !isJcc(insts[i+1].Op) {
			continue
		}
		pl.StackCheck = true
		if i+2 < len(insts) && isPushBP(insts[i+2]) {
			pl.Entry = offs[i+2]
			return pl, nil
		}
		pl.Dedup = true
		break
	}
	return pl, nil
}

func readsG(inst x86asm.Inst) bool {
	for _, a := range inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.R14 {
			return true
		}
	}
	return false
}

func isJcc(op x86asm.Op) bool {
	switch op {
	case x86asm.JBE, x86asm.JB, x86asm.JA, x86asm.JAE, x86asm.JLE, x86asm.JL, x86asm.JG, x86asm.JGE:
		return true
	}
	return false
}

func isPushBP(inst x86asm.Inst) bool {
	return inst.Op == x86asm.PUSH && inst.Args[0] == x86asm.RBP
}

// callsAny reports whether code of an a binary (starting at address at)
// calls or jumps to one of targets.
func callsAny(a Arch, code []byte, at uint64, targets map[uint64]bool) bool {
	if a == ARM64 {
		return callsAnyARM64(code, at, targets)
	}
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return false
		}
		if inst.Op == x86asm.CALL || inst.Op == x86asm.JMP {
			if rel, ok := inst.Args[0].(x86asm.Rel); ok {
				dst := at + uint64(off) + uint64(inst.Len) + uint64(int64(rel))
				if targets[dst] {
					return true
				}
			}
		}
		off += inst.Len
	}
	return false
}

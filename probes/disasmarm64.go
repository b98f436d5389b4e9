package probes

import "golang.org/x/arch/arm64/arm64asm"

// arm64 instructions are 4 bytes each: a word that does not decode (the
// zero padding between functions) is skipped without losing the stream.
const arm64Inst = 4

// condLS is B.cond's condition code for "lower or same", the stack check's
// branch to morestack.
const condLS = 9

// placeARM64 places probes in an arm64 function. Every RET (RET, or RET Xn)
// ends a call. Go's split-stack prologue loads g.stackguard0 from 16(R28),
// compares SP (or, for big frames, SP minus the frame size computed in R17)
// with it, and branches with B.LS to the morestack call at the function's
// end, which jumps back to the start: the entry probe goes on that B.LS
// (EntryOnCheck), which the kernel simulates where it would single-step
// any instruction of the frame setup; the program drops the hits whose
// branch is taken, so a prologue re-run starts the call once.
func placeARM64(code []byte) (Placement, error) {
	var pl Placement
	loadsG := -1
	for off, i := 0, 0; off+arm64Inst <= len(code); off, i = off+arm64Inst, i+1 {
		inst, err := arm64asm.Decode(code[off:])
		if err != nil {
			continue
		}
		if inst.Op == arm64asm.RET {
			pl.Returns = append(pl.Returns, uint64(off))
		}
		if pl.StackCheck || i >= 8 {
			continue
		}
		switch {
		case loadsG < 0 && inst.Op == arm64asm.LDR && readsGARM64(inst):
			loadsG = i
		case loadsG >= 0 && isBranchLS(inst):
			pl.StackCheck = true
			pl.EntryOnCheck = true
			pl.Entry = uint64(off)
		}
	}
	return pl, nil
}

// readsGARM64 reports whether inst reads memory at R28 (Go's g).
func readsGARM64(inst arm64asm.Inst) bool {
	for _, a := range inst.Args {
		if m, ok := a.(arm64asm.MemImmediate); ok && m.Base == arm64asm.RegSP(arm64asm.X28) {
			return true
		}
	}
	return false
}

func isBranchLS(inst arm64asm.Inst) bool {
	c, ok := inst.Args[0].(arm64asm.Cond)
	return inst.Op == arm64asm.B && ok && c.Value == condLS
}

// callsAnyARM64 reports whether code (starting at address at) branches,
// with B or BL, to one of targets.
func callsAnyARM64(code []byte, at uint64, targets map[uint64]bool) bool {
	found := false
	branchesARM64(code, at, func(off int, op arm64asm.Op, target uint64) bool {
		found = targets[target]
		return !found
	})
	return found
}

// callsARM64 returns the offsets in code (starting at address at) of every
// BL to target: a direct call, which arm64's kernel simulates, with its
// arguments in their registers.
func callsARM64(code []byte, at, target uint64) []uint64 {
	var offs []uint64
	branchesARM64(code, at, func(off int, op arm64asm.Op, t uint64) bool {
		if op == arm64asm.BL && t == target {
			offs = append(offs, uint64(off))
		}
		return true
	})
	return offs
}

// branchesARM64 calls fn with the offset, operation and target address of
// each direct B or BL in code (starting at address at), until fn returns
// false.
func branchesARM64(code []byte, at uint64, fn func(off int, op arm64asm.Op, target uint64) bool) {
	for off := 0; off+arm64Inst <= len(code); off += arm64Inst {
		inst, err := arm64asm.Decode(code[off:])
		if err != nil || (inst.Op != arm64asm.B && inst.Op != arm64asm.BL) {
			continue
		}
		if rel, ok := inst.Args[0].(arm64asm.PCRel); ok && !fn(off, inst.Op, at+uint64(off)+uint64(int64(rel))) {
			return
		}
	}
}

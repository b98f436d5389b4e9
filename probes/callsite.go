package probes

import (
	"errors"
	"fmt"

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
	seen := false
	for o := 0; o < len(code); {
		inst, derr := x86asm.Decode(code[o:], 64)
		if derr != nil {
			return 0, 0, fmt.Errorf("disassemble at +%#x: %w", o, derr)
		}
		next := base + uint64(o) + uint64(inst.Len)
		rel, direct := inst.Args[0].(x86asm.Rel)
		switch {
		case inst.Op == x86asm.CALL && direct:
			t := uint64(int64(next) + int64(rel))
			if seen {
				return uint64(o), t, nil
			}
			seen = t == callee
		case seen && (inst.Op == x86asm.CALL || inst.Op == x86asm.RET || inst.Op.String()[0] == 'J' || inst.Op == x86asm.LOOP):
			return 0, 0, fmt.Errorf("%w: %v at +%#x between the calls", ErrNoCallSite, inst.Op, o)
		}
		o += inst.Len
	}
	return 0, 0, ErrNoCallSite
}

package probes

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// SendSites finds caller's CALLs to runtime.selectgo for a select whose
// send case sends on the channel held in a struct's field at chanField:
// told apart from caller's other selects (its own or inlined ones) by the
// straight-line code before the CALL, which loads that field and stores it
// as the first case's channel. At such a CALL, AX points at the select's
// cases, its send cases first: {channel, pointer to the value sent} each.
func SendSites(b *Binary, caller string, chanField int64) ([]Site, error) {
	sites, err := CallSites(b, caller, "runtime.selectgo")
	if err != nil {
		return nil, err
	}
	insts, err := b.disassemble(sites[0].Func)
	if err != nil {
		return nil, err
	}
	at := make(map[int]int, len(insts))
	for i, in := range insts {
		at[in.off] = i
	}
	var out []Site
	for _, s := range sites {
		if sendsFrom(insts[:at[int(s.Call)]], chanField) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s has no select sending on the channel at +%#x", ErrNoCallSite, caller, chanField)
	}
	return out, nil
}

// sendsFrom says whether the code before a CALL of runtime.selectgo,
// back to the previous control transfer, puts in AX the address of cases
// on the stack (LEAQ base(SP), AX) whose first channel (stored at
// base(SP)) was loaded from a field at chanField (MOVQ chanField(reg), r).
func sendsFrom(before []inst, chanField int64) bool {
	start := len(before)
	for start > 0 && !transfers(before[start-1].Op) {
		start--
	}
	code := before[start:]
	// The latest write of each step's register, walking back.
	base, found := int64(0), false
	i := len(code) - 1
	for ; i >= 0; i-- {
		if dst, ok := code[i].Args[0].(x86asm.Reg); ok && dst == x86asm.RAX {
			m, isMem := code[i].Args[1].(x86asm.Mem)
			if code[i].Op != x86asm.LEA || !isMem || m.Base != x86asm.RSP || m.Index != 0 {
				return false
			}
			base, found = m.Disp, true
			break
		}
	}
	if !found {
		return false
	}
	var ch x86asm.Reg
	for i = len(code) - 1; i >= 0; i-- {
		if m, ok := code[i].Args[0].(x86asm.Mem); ok && m.Base == x86asm.RSP && m.Index == 0 && m.Disp == base {
			r, isReg := code[i].Args[1].(x86asm.Reg)
			if code[i].Op != x86asm.MOV || !isReg || r < x86asm.RAX || r > x86asm.R15 {
				return false
			}
			ch = r
			break
		}
	}
	if ch == 0 {
		return false
	}
	for i--; i >= 0; i-- {
		if dst, ok := code[i].Args[0].(x86asm.Reg); ok && dst == ch {
			m, isMem := code[i].Args[1].(x86asm.Mem)
			return code[i].Op == x86asm.MOV && isMem && m.Base != x86asm.RSP && m.Index == 0 && m.Disp == chanField
		}
	}
	return false
}

// transfers says whether op may leave straight-line code.
func transfers(op x86asm.Op) bool {
	return op == x86asm.CALL || op == x86asm.RET || op == x86asm.JMP || op >= x86asm.JA && op <= x86asm.JS
}

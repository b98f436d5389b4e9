package probes

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// EndInCallers moves the end of p's calls from its RETs, which the kernel
// single-steps, into its callers, after each of them gets the call's
// return: site, a direct CALL the kernel emulates (HTTPServeEndSite), for
// the hot caller, and the return address of every other direct CALL of
// p.Func (others, CallsTo), single-stepped like a RET but only on those
// rarer paths, and indirect, the return sites of the indirect calls that
// can reach p.Func (HTTPIndirectEnds), single-stepped too. Their program
// (bpf's CallEndProgram) adds the popped return address to the depth, so
// that the end matches the call's key.
//
// Every caller must be seen: a jump to p.Func (a tail call, as Go makes in
// some method wrappers) among the functions whose names start with prefix
// would end calls nobody sees, so it refuses the move. A refusal, or
// force, leaves the RETs in place and sets p.EndFallback to why; the
// error itself is never fatal.
func EndInCallers(b *Binary, p *Probe, prefix string, site Site, indirect []Site, siteErr error, force bool) {
	p.EndSite = p.Func.Name + " RET"
	others, err := callerEnds(b, p, prefix, site, siteErr, force)
	if err != nil {
		p.EndFallback = err.Error()
		return
	}
	p.Ends = []uint64{site.Func.Entry + site.Off}
	for _, o := range append(others, indirect...) {
		p.Ends = append(p.Ends, o.Func.Entry+o.Off)
	}
	p.EndSite = fmt.Sprintf("%s+%#x CALL %s", site.Func.Name, site.Off, site.Callee)
}

// callerEnds returns the direct CALLs of fn outside the site's caller, or
// why the site cannot replace fn's RETs.
func callerEnds(b *Binary, p *Probe, prefix string, site Site, siteErr error, force bool) ([]Site, error) {
	fn := p.Func
	if force {
		return nil, fmt.Errorf("RET probes forced")
	}
	if siteErr != nil {
		return nil, siteErr
	}
	if len(p.Placement.Returns) == 0 || p.Placement.EntryIsReturn {
		return nil, fmt.Errorf("%w: %s has no RET", ErrNoCallSite, fn.Name)
	}
	calls, err := CallsTo(b, fn.Name, prefix)
	if err != nil {
		return nil, err
	}
	var others []Site
	own := 0
	for _, c := range calls {
		if c.Func.Entry == site.Func.Entry {
			own++
			continue
		}
		others = append(others, c)
	}
	if own != 1 {
		return nil, fmt.Errorf("%w: %s has %d direct CALLs of %s by CallsTo, want 1", ErrNoCallSite, site.Func.Name, own, fn.Name)
	}
	if err := noJumpTo(b, fn, prefix); err != nil {
		return nil, err
	}
	return others, nil
}

// noJumpTo checks that no function whose name starts with prefix jumps
// (JMP rel) to fn's entry. Only a function whose bytes could hold such a
// JMP (mayJump) is disassembled, and one that cannot be fails the check:
// net/http has some 1,500 functions, and disassembling them all was a
// quarter of a new executable's analysis (bench/README §10).
func noJumpTo(b *Binary, fn Func, prefix string) error {
	return b.eachCode(prefix, func(f Func, code []byte) error {
		if f.Name == fn.Name || !mayJump(code, f.Entry, fn.Entry) {
			return nil
		}
		insts, err := b.disassemble(f)
		if err != nil {
			return err
		}
		for _, in := range insts {
			rel, ok := in.Args[0].(x86asm.Rel)
			if in.Op == x86asm.JMP && ok && uint64(int64(f.Entry)+int64(in.off)+int64(in.Len)+int64(rel)) == fn.Entry {
				return fmt.Errorf("%w: %s jumps to %s (a tail call): its calls would end unseen", ErrNoCallSite, f.Name, fn.Name)
			}
		}
		return nil
	})
}

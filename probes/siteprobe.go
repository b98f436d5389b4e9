package probes

import (
	"fmt"

	"github.com/tcagent/tcagent/bpf"
)

// CallSites finds caller's direct CALLs (arm64: BLs) to callee. At a CALL
// the callee's arguments already sit in their ABI registers, so a probe on
// the CALL itself sees what an entry probe of the callee would, for this
// caller's calls only, and the kernel emulates it (arm64's simulates BL)
// rather than single-stepping it. Off (and Call) is the CALL's offset from
// caller's entry.
func CallSites(b *Binary, caller, callee string) ([]Site, error) {
	fn, ok := b.Func(caller)
	if !ok {
		return nil, fmt.Errorf("%w: no %s in %s", ErrNoCallSite, caller, b.Path)
	}
	cf, ok := b.Func(callee)
	if !ok {
		return nil, fmt.Errorf("%w: no %s in %s", ErrNoCallSite, callee, b.Path)
	}
	var offs []uint64
	if b.Arch == ARM64 {
		code, err := b.Code(fn)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name, err)
		}
		offs = callsARM64(code, fn.Entry, cf.Entry)
	} else {
		insts, err := b.disassemble(fn)
		if err != nil {
			return nil, err
		}
		for _, in := range insts {
			if t, ok := in.target(fn.Entry); ok && t == cf.Entry {
				offs = append(offs, uint64(in.off))
			}
		}
	}
	var sites []Site
	for _, off := range offs {
		sites = append(sites, Site{Func: fn, Off: off, Call: off, Callee: callee})
	}
	if len(sites) == 0 {
		return nil, fmt.Errorf("%w: %s makes no direct CALL to %s", ErrNoCallSite, caller, callee)
	}
	return sites, nil
}

// NewSiteProbe places a probe on one instruction inside a function, a
// CALL of CallSites: each pass reports a call that starts and ends there,
// in one hit (as for a function whose entry is its RET), with the entry
// captures read from the registers at that instruction. For built-in sets
// that read state at a point of a caller rather than around a call.
func NewSiteProbe(s Site, id uint32, rt Runtime) *Probe {
	return &Probe{ID: id, Spec: Spec{Symbol: fmt.Sprintf("%s+%#x", s.Func.Name, s.Off)}, Func: s.Func,
		Placement: Placement{Entry: s.Off, EntryIsReturn: true}, ErrorCapture: -1, HandleCapture: -1, ReceiverCapture: -1,
		Recipe: bpf.Recipe{EntryIsReturn: true, GoidOffset: rt.GoidOffset, StackHiOffset: rt.StackHiOffset}}
}

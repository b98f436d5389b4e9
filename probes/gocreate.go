package probes

import "fmt"

// placeGoCreate places the probes that see a goroutine's creation, where
// runtime.newproc1 (fn, placed pl) has returned the new g.
//
// A go statement runs newproc1 from runtime.newproc.func1, whose CALL
// runtime.runqput right after it holds the new g in RBX (GoCreateSite): the
// kernel emulates that CALL, so the hot path is not single-stepped. Every
// other direct caller of newproc1 (CallsTo: the debugger's
// runtime.debugCallWrap.func1, runtime.newcoro.func1 where iter.Pull is
// linked, any a release adds) gets a probe at its return address, where the
// result is in RAX: single-stepped, but on rare paths, so that no
// goroutine's lineage is lost. Where g has no parentGoid (Go 1.19, 1.20)
// the creator is read from RBX at every CALL newproc1, emulated too.
//
// Where the site is not found (or opts.RetGoCreate), the probes stay on
// newproc1's RETs and entry, single-stepped on every go statement, and
// GoCreateFallback says why.
func (rp *RuntimeProbes) placeGoCreate(b *Binary, fn Func, pl Placement, opts RuntimeOptions) error {
	if len(pl.Returns) == 0 {
		return fmt.Errorf("%s: runtime.newproc1 has no RET", b.Path)
	}
	site, calls, err := goCreateSites(b, opts)
	if err != nil {
		rp.GoCreateFallback = err.Error()
		rp.GoCreateSite = "runtime.newproc1 RET"
		for _, r := range pl.Returns {
			rp.GoCreate = append(rp.GoCreate, fn.Entry+r)
		}
		if rp.Recipe.Creator {
			rp.GoCreateEntry = []uint64{rp.entry(fn, pl)}
		}
		return nil
	}
	rp.GoCreateSite = fmt.Sprintf("%s+%#x CALL %s", site.Func.Name, site.Off, site.Callee)
	rp.GoCreateCall = []uint64{site.Func.Entry + site.Off}
	for _, c := range calls {
		if c.Func.Entry != site.Func.Entry {
			rp.GoCreate = append(rp.GoCreate, c.Func.Entry+c.Off)
		}
		if rp.Recipe.Creator {
			rp.GoCreateEntry = append(rp.GoCreateEntry, c.Func.Entry+c.Call)
		}
	}
	return nil
}

// goCreateSites finds newproc.func1's emulated site and every direct CALL
// of newproc1, the site's own among them; an error says why they cannot
// replace newproc1's RETs.
func goCreateSites(b *Binary, opts RuntimeOptions) (Site, []Site, error) {
	if opts.RetGoCreate {
		return Site{}, nil, fmt.Errorf("RET probes forced (RuntimeOptions.RetGoCreate)")
	}
	site, err := GoCreateSite(b)
	if err != nil {
		return Site{}, nil, err
	}
	// newproc1 is unexported: its callers are the runtime's.
	calls, err := CallsTo(b, "runtime.newproc1", "runtime.")
	if err != nil {
		return Site{}, nil, err
	}
	own := 0
	for _, c := range calls {
		if c.Func.Entry == site.Func.Entry {
			own++
		}
	}
	if own != 1 {
		return Site{}, nil, fmt.Errorf("%w: %s has %d direct CALLs of runtime.newproc1 by CallsTo, want 1", ErrNoCallSite, site.Func.Name, own)
	}
	return site, calls, nil
}

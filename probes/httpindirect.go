package probes

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// itabFun0 is the offset of an itab's first method slot, fun[0], past its
// inter and _type pointers and its hash (Go 1.19 to 1.27).
const itabFun0 = 0x18

// HTTPIndirectEnds finds where the calls of net/http.serverHandler.ServeHTTP
// that no direct CALL makes return: the return sites of the indirect calls
// that can reach it. None where its address is stored nowhere in the
// binary's data (up to Go 1.26: only direct CALLs reach it, which
// HTTPServeEndSite and CallsTo cover).
//
// Go 1.27's HTTP/2 server (net/http/internal/http2) reaches it through an
// interface: (*conn).serve passes serverHandler{srv} as the Handler h of
// (*Server).serveHTTP2Conn, which hands http2Handler{h} to the HTTP/2
// server, whose http2Handler.ServeHTTP calls h.ServeHTTP. This proves that
// shape on the binary's code and refuses any other, so that no call ends
// unseen:
//   - every data word holding ServeHTTP's address is fun[0] of an itab
//     (an interface call reaches a method only through its itab, a method
//     value through a wrapper that is a direct caller);
//   - no data holds that itab's address (no interface value built
//     statically), and every instruction that addresses it is a LEAQ into
//     R8 followed, on a straight-line path that keeps R8, by a direct CALL
//     (*Server).serveHTTP2Conn, where R8 is the itab word of its handler
//     argument h (the register ABI: s in AX, ctx in BX and CX, nc in DI and
//     SI, h in R8 and R9);
//   - http2Handler.ServeHTTP makes exactly one indirect CALL, through an
//     itab's fun[0] (a Handler's ServeHTTP): its return address is the
//     site, single-stepped (HTTP/2 requests only; HTTP/1 ends on the
//     emulated site).
//
// Not checked by disassembly: that serveHTTP2Conn uses h only to build
// http2Handler{h} (read in Go 1.27's source); the kernel tests would see a
// call it missed as a span ended only at detach.
func HTTPIndirectEnds(b *Binary) ([]Site, error) {
	const (
		serve = "net/http.serverHandler.ServeHTTP"
		conn  = "net/http.(*Server).serveHTTP2Conn"
		h2    = "net/http.http2Handler.ServeHTTP"
	)
	sh, ok := b.Func(serve)
	if !ok {
		return nil, fmt.Errorf("%w: no %s in %s", ErrNoCallSite, serve, b.Path)
	}
	slots, err := b.storedAt(sh.Entry)
	if err != nil || len(slots) == 0 {
		return nil, err
	}
	cf, ok := b.Func(conn)
	if !ok {
		return nil, fmt.Errorf("%w: %s is stored in data, and there is no %s", ErrNoCallSite, serve, conn)
	}
	for _, slot := range slots {
		itab := slot - itabFun0
		if at, err := b.storedAt(itab); err != nil {
			return nil, err
		} else if len(at) > 0 {
			return nil, fmt.Errorf("%w: the itab holding %s at %#x is stored in data at %#x", ErrNoCallSite, serve, itab, at)
		}
		refs, err := b.codeRefs(itab)
		if err != nil {
			return nil, err
		}
		if len(refs) == 0 {
			return nil, fmt.Errorf("%w: %s is stored at %#x, which no code addresses as an itab's fun[0]", ErrNoCallSite, serve, slot)
		}
		for _, r := range refs {
			if err := handlerOf(r, cf); err != nil {
				return nil, fmt.Errorf("%w: %s+%#x: %v", ErrNoCallSite, r.fn.Name, r.insts[r.i].off, err)
			}
		}
	}
	fn, ok := b.Func(h2)
	if !ok {
		return nil, fmt.Errorf("%w: %s is called through an interface, and there is no %s", ErrNoCallSite, serve, h2)
	}
	insts, err := b.disassemble(fn)
	if err != nil {
		return nil, err
	}
	call := -1
	for i, in := range insts {
		if _, direct := in.target(fn.Entry); in.Op != x86asm.CALL || direct {
			continue
		}
		if call >= 0 {
			return nil, fmt.Errorf("%w: %s makes more than one indirect CALL", ErrNoCallSite, h2)
		}
		call = i
	}
	if call < 0 || !methodCall(insts, call) {
		return nil, fmt.Errorf("%w: %s makes no CALL through an itab's fun[0]", ErrNoCallSite, h2)
	}
	in := insts[call]
	return []Site{{Func: fn, Off: uint64(in.off + in.Len), Call: uint64(in.off), Callee: serve}}, nil
}

// handlerOf checks that the reference r to an itab is a LEAQ into R8 that
// reaches, on a straight-line path keeping R8, a direct CALL of fn (see
// HTTPIndirectEnds).
func handlerOf(r codeRef, fn Func) error {
	lea := r.insts[r.i]
	if dst, _ := lea.Args[0].(x86asm.Reg); lea.Op != x86asm.LEA || dst != x86asm.R8 {
		return fmt.Errorf("%v addresses the itab (not a LEAQ into R8)", x86asm.GoSyntax(lea.Inst, 0, nil))
	}
	for j, in := range r.insts[r.i+1:] {
		t, direct := in.target(r.fn.Entry)
		switch {
		case direct && t == fn.Entry:
			if !carries(r.insts[r.i+1:r.i+1+j], x86asm.R8, x86asm.R8) {
				return fmt.Errorf("R8 is overwritten before the CALL %s", fn.Name)
			}
			return nil
		case in.Op == x86asm.CALL || in.Op == x86asm.RET || in.Op.String()[0] == 'J' || in.Op == x86asm.LOOP:
			return fmt.Errorf("%v at +%#x before a CALL %s", in.Op, in.off, fn.Name)
		}
	}
	return fmt.Errorf("no CALL %s follows", fn.Name)
}

// methodCall reports whether the indirect CALL insts[call] (through a
// register) calls what the latest write to that register loaded: fun[0] of
// an itab, MOVQ 0x18(R), reg. No jump may land between the load and the
// CALL (the register could then come from elsewhere).
func methodCall(insts []inst, call int) bool {
	reg, ok := insts[call].Args[0].(x86asm.Reg)
	if !ok {
		return false
	}
	for i := call - 1; i >= 0; i-- {
		in := insts[i]
		if in.Op == x86asm.CALL {
			return false // a call's result or clobber, not a load
		}
		dst, ok := in.Args[0].(x86asm.Reg)
		if !ok || in.Op == x86asm.CMP || in.Op == x86asm.TEST {
			continue // no register written
		}
		if full, _ := reg64(dst); full != reg {
			continue
		}
		m, ok := in.Args[1].(x86asm.Mem)
		if in.Op != x86asm.MOV || !ok || m.Disp != itabFun0 || m.Base == x86asm.RIP || m.Index != 0 || dst != reg {
			return false
		}
		return !jumpsInto(insts, uint64(insts[i+1].off), uint64(insts[call].off))
	}
	return false
}

// jumpsInto reports whether any jump of insts lands in the
// offsets [from, to].
func jumpsInto(insts []inst, from, to uint64) bool {
	for _, in := range insts {
		rel, ok := in.Args[0].(x86asm.Rel)
		if !ok || in.Op == x86asm.CALL {
			continue
		}
		t := uint64(int64(in.off) + int64(in.Len) + int64(rel))
		if t >= from && t <= to {
			return true
		}
	}
	return false
}

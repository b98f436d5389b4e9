package probes

import (
	"fmt"
	"strings"

	"github.com/tcagent/tcagent/bpf"
)

// DefaultMaxString is how many bytes of a string are captured by default.
const DefaultMaxString = 128

// Probe is a spec compiled against one binary: where to attach and what the
// BPF programs capture, and how to turn the captures back into values.
type Probe struct {
	ID   uint32
	Spec Spec
	Func Func
	Sig  *Signature
	// Placement of the probes, offsets relative to Func.Entry.
	Placement Placement
	Recipe    bpf.Recipe
	// EntryAttrs and ReturnAttrs decode the recipe's captures, in order.
	EntryAttrs, ReturnAttrs []CapturedAttr
	// ErrorCapture is the index in the return captures of the returned
	// error, -1 when the function returns none.
	ErrorCapture int
	// HandleCapture is, for a completion-handle async probe, the index in
	// the return captures of the returned handle; else -1.
	HandleCapture int
	// ReceiverCapture is, for a completion probe, the index in the entry
	// captures of its receiver; else -1.
	ReceiverCapture int
	// Completion is, for a completion-handle async probe, the probe of its
	// completion function.
	Completion *Probe
	// IsCompletion marks the internal probes of completion functions: they
	// open no span and only settle the calls whose handle they receive.
	IsCompletion bool
	// Role says what the span side makes of the probe's calls.
	Role Role
	// Set is the built-in set the probe belongs to, "" for custom probes.
	Set string
	// IncomingTrace is, for a server probe whose span may continue a
	// caller's trace, 1 + the index of the entry capture holding the
	// incoming traceparent; 0 for none. With --propagate the kernel reads
	// it too.
	IncomingTrace int
	// Outgoing marks a client probe whose request --propagate may carry
	// the span's trace context in.
	Outgoing bool
	// Ends, when set, are where the return program goes instead of the
	// RETs of Placement: sites in the callers (EndInCallers), addresses in
	// the binary. EndSite names the main one ("F RET" on the RETs);
	// EndFallback, for a probe that tried to leave its RETs, says why it
	// stayed (logged once, counted in RetFallbacks).
	Ends                 []uint64
	EndSite, EndFallback string
}

// CapturedAttr is how one capture becomes an attribute.
type CapturedAttr struct {
	Key    string
	Type   string // int, uint, bool, string; bytes (a built-in's []byte, not text)
	Size   int    // bytes, for sign extension of ints
	MaxLen int    // strings
}

// Compile checks spec against b and builds its probe. rt gives the runtime
// offsets the recipe needs.
func Compile(b *Binary, spec Spec, id uint32, rt Runtime) (*Probe, error) {
	fn, err := b.Lookup(spec.Symbol)
	if err != nil {
		return nil, err
	}
	code, err := b.Code(fn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Symbol, err)
	}
	pl, err := Place(b.Arch, code)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Symbol, err)
	}
	// A function without RET never returns normally (it always panics or
	// exits): its calls end when a panic unwinds them or the goroutine
	// exits.
	sig, err := b.probeSignature(fn.Name, spec.Signature)
	if err != nil {
		return nil, err
	}
	p := &Probe{ID: id, Spec: spec, Func: fn, Sig: sig, Placement: pl, ErrorCapture: -1, Role: specRole(spec),
		Recipe: bpf.Recipe{Dedup: pl.Dedup, EntryIsReturn: pl.EntryIsReturn, GoidOffset: rt.GoidOffset, StackHiOffset: rt.StackHiOffset}, HandleCapture: -1, ReceiverCapture: -1}

	if sig == nil {
		if spec.Async != nil && spec.Async.Completion != "" {
			return nil, fmt.Errorf("%s: %s has no DWARF: add `signature:` to locate the async handle %s", spec.Symbol, b.Path, spec.Async.Handle)
		}
		if len(spec.Attributes) > 0 {
			return nil, fmt.Errorf("%s: %s has no DWARF: add `signature:` (e.g. \"func(s *Store, key string) (string, error)\") to capture attributes", spec.Symbol, b.Path)
		}
		return p, nil
	}
	var entrySlots, retSlots uint8
	for _, a := range spec.Attributes {
		isResult, idx, _ := ParseFrom(a.From)
		params := sig.Params
		if isResult {
			params = sig.Results
			if sig.ResultsUnknown {
				return nil, fmt.Errorf("%s: attribute %s: the binary's DWARF does not describe the results of %s (only its inlined form): add `signature:`", spec.Symbol, a.Key, fn.Name)
			}
		}
		if idx >= len(params) {
			return nil, fmt.Errorf("%s: attribute %s: %s: the function has %d %s", spec.Symbol, a.Key, a.From, len(params), plural(isResult))
		}
		prm := params[idx]
		c, ca, err := captureFor(spec.Symbol, a, prm)
		if err != nil {
			return nil, err
		}
		slots := &entrySlots
		if isResult {
			slots = &retSlots
		}
		if c.Kind == bpf.CapString {
			c.Slot = *slots
			*slots++
		}
		if isResult {
			p.Recipe.Return = append(p.Recipe.Return, c)
			p.ReturnAttrs = append(p.ReturnAttrs, ca)
		} else {
			p.Recipe.Entry = append(p.Recipe.Entry, c)
			p.EntryAttrs = append(p.EntryAttrs, ca)
		}
	}
	if spec.Async != nil && spec.Async.Completion != "" {
		_, idx, _ := ParseFrom(spec.Async.Handle)
		if sig.ResultsUnknown {
			return nil, fmt.Errorf("%s: async handle %s: the binary's DWARF does not describe the results of %s: add `signature:`", spec.Symbol, spec.Async.Handle, fn.Name)
		}
		if idx >= len(sig.Results) {
			return nil, fmt.Errorf("%s: async handle %s: the function has %d results", spec.Symbol, spec.Async.Handle, len(sig.Results))
		}
		r := sig.Results[idx]
		var reg uint8
		switch {
		case r.OnStack:
			return nil, fmt.Errorf("%s: async handle %s is passed on the stack: unsupported", spec.Symbol, spec.Async.Handle)
		case r.Kind == KindPointer && len(r.Regs) == 1:
			reg = r.Regs[0]
		case len(r.Regs) == 2 && (r.Kind == KindError || r.Kind == KindOther) && !strings.HasPrefix(r.Type, "string") && !strings.HasPrefix(r.Type, "[]"):
			reg = r.Regs[1] // an interface: its data word is the handle
		default:
			return nil, fmt.Errorf("%s: async handle %s is %s: want a pointer or an interface", spec.Symbol, spec.Async.Handle, r.Type)
		}
		p.HandleCapture = len(p.Recipe.Return)
		p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapReg, Reg: reg})
	}
	// A returned error, when the last result is one, becomes an error event.
	if n := len(sig.Results); n > 0 && !sig.ResultsUnknown && sig.Results[n-1].Kind == KindError {
		r := sig.Results[n-1]
		if len(r.Regs) == 2 {
			p.ErrorCapture = len(p.Recipe.Return)
			p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: r.Regs[0], Reg2: r.Regs[1], Slot: retSlots, MaxLen: bpf.StringSlotSize})
			retSlots++
		}
	}
	if entrySlots > bpf.StringSlots || retSlots > bpf.StringSlots {
		return nil, fmt.Errorf("%s: at most %d strings (a returned error counts as one) at entry and at return", spec.Symbol, bpf.StringSlots)
	}
	if len(p.Recipe.Entry) > bpf.MaxCaptures || len(p.Recipe.Return) > bpf.MaxCaptures {
		return nil, fmt.Errorf("%s: at most %d attributes at entry and at return", spec.Symbol, bpf.MaxCaptures)
	}
	return p, nil
}

// probeSignature lays out fn, the binary's name of a probed function,
// from its DWARF and the spec's signature text (chooseSignature says which
// wins); nil when neither describes it.
func (b *Binary) probeSignature(fn, text string) (*Signature, error) {
	dw, err := b.SignatureFromDWARF(fn)
	if err != nil {
		return nil, err
	}
	var user *Signature
	if text != "" {
		if user, err = SignatureFor(b.Arch, fn, text); err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
	}
	return chooseSignature(fn, dw, user)
}

func plural(results bool) string {
	if results {
		return "results"
	}
	return "arguments"
}

func captureFor(sym string, a Attribute, prm Param) (bpf.Capture, CapturedAttr, error) {
	ca := CapturedAttr{Key: a.Key, Type: a.Type, Size: prm.Size, MaxLen: a.MaxLen}
	if ca.MaxLen == 0 {
		ca.MaxLen = DefaultMaxString
	}
	bad := func() error {
		return fmt.Errorf("%s: attribute %s: %s is %s (%s), which cannot be captured as %s", sym, a.Key, a.From, prm.Type, prm.Kind, a.Type)
	}
	if prm.OnStack {
		return bpf.Capture{}, ca, fmt.Errorf("%s: attribute %s: %s is passed on the stack: unsupported argument type", sym, a.Key, a.From)
	}
	switch a.Type {
	case "string":
		if prm.Kind != KindString || len(prm.Regs) != 2 {
			return bpf.Capture{}, ca, bad()
		}
		return bpf.Capture{Kind: bpf.CapString, Reg: prm.Regs[0], Reg2: prm.Regs[1], MaxLen: uint16(ca.MaxLen)}, ca, nil
	case "int", "uint", "bool":
		switch prm.Kind {
		case KindInt, KindUint, KindBool, KindPointer:
		default:
			return bpf.Capture{}, ca, bad()
		}
		if a.Type == "bool" && prm.Kind != KindBool {
			return bpf.Capture{}, ca, bad()
		}
		if len(prm.Regs) != 1 {
			return bpf.Capture{}, ca, bad()
		}
		return bpf.Capture{Kind: bpf.CapReg, Reg: prm.Regs[0]}, ca, nil
	}
	return bpf.Capture{}, ca, bad()
}

// ErrorFrom says where a completion function's error is, for the
// built-in sets, which know their functions' registers without DWARF.
type ErrorFrom struct {
	// Regs are the error interface's two words (its itab and data) under
	// Go's ABI.
	Regs [2]uint8
	// Arg marks an argument (a finish(err) method): the registers are kept
	// at entry and read at the return. Else they are results.
	Arg bool
}

// CompileCompletion builds the internal probe of an async probe's completion
// function: it captures the receiver at entry and the returned error. With
// from nil (a spec's completion) the receiver and the error come from the
// function's DWARF; without DWARF the receiver is taken to be a pointer in
// RAX and no error is read. With from set the receiver is RAX (a method on
// a pointer) and the error is where from says, DWARF or not. The caller
// numbers it. It opens no span: its role is RoleNone, which a built-in may
// name for the meaning of the error.
func CompileCompletion(b *Binary, symbol string, rt Runtime, from *ErrorFrom) (*Probe, error) {
	var p *Probe
	if from == nil {
		var err error
		if p, err = Compile(b, Spec{Symbol: symbol}, 0, rt); err != nil {
			return nil, fmt.Errorf("async completion: %w", err)
		}
	} else {
		var ok bool
		var err error
		if p, ok, err = NewProbe(b, symbol, 0, rt); err != nil {
			return nil, fmt.Errorf("async completion: %w", err)
		} else if !ok {
			return nil, fmt.Errorf("async completion: %s: no such function", symbol)
		}
	}
	p.IsCompletion = true
	p.Role = Role{Kind: RoleNone}
	reg := uint8(0)
	if p.Sig != nil {
		if len(p.Sig.Params) == 0 || p.Sig.Params[0].Kind != KindPointer || len(p.Sig.Params[0].Regs) != 1 {
			return nil, fmt.Errorf("async completion %s: want a method with a pointer receiver", symbol)
		}
		reg = p.Sig.Params[0].Regs[0]
	}
	p.ReceiverCapture = len(p.Recipe.Entry)
	p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapReg, Reg: reg})
	if from != nil {
		regs := from.Regs
		if from.Arg {
			p.Recipe.Save = []uint8{regs[0], regs[1]}
			regs = [2]uint8{bpf.BaseSaved, bpf.BaseSaved + 1}
		}
		p.ErrorCapture = len(p.Recipe.Return)
		p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: regs[0], Reg2: regs[1], MaxLen: bpf.StringSlotSize})
	}
	return p, nil
}

// RuntimeProbes are the probes on the Go runtime that give goroutine lineage
// and panics: where they go and their recipes.
type RuntimeProbes struct {
	// GoCreate, GoCreateCall and GoCreateEntry see goroutine creation
	// (see placeGoCreate): GoCreate where newproc1's result (the new g)
	// is in RAX, GoCreateCall where it is in RBX, GoCreateEntry where
	// newproc1's callergp is in RBX, for releases whose g has no
	// parentGoid (Go 1.19, 1.20; Recipe.Creator), else none. GoExit is
	// the entry of runtime.goexit1; Panic the entry of runtime.gopanic.
	// Virtual addresses.
	GoCreate, GoCreateCall, GoCreateEntry []uint64
	GoExit, Panic                         uint64
	// OnCheck are those of the entry sites above (GoExit, Panic,
	// GoCreateEntry) that sit on their function's stack-check branch: see
	// Placement.EntryOnCheck.
	OnCheck []uint64
	// GoCreateSite names where goroutine creation is seen, for the
	// session's stats; GoCreateFallback says why it is on newproc1's
	// single-stepped RETs, "" when it is on the emulated site.
	GoCreateSite, GoCreateFallback string
	Recipe                         bpf.Recipe // GoExit's and GoCreate's
	PanicRecipe                    bpf.Recipe
}

// RuntimeOptions change where the runtime probes go, for tests.
type RuntimeOptions struct {
	// RetGoCreate keeps goroutine creation on runtime.newproc1's RETs
	// (single-stepped) even where the emulated site is found: for the
	// tests of that fallback. No flag sets it.
	RetGoCreate bool
}

// CompileRuntime finds the runtime probes in b.
func CompileRuntime(b *Binary, rt Runtime, opts RuntimeOptions) (*RuntimeProbes, error) {
	place := func(sym string) (Func, Placement, error) {
		fn, ok := b.Func(sym)
		if !ok {
			return fn, Placement{}, fmt.Errorf("%s: no %s: cannot follow goroutines", b.Path, sym)
		}
		code, err := b.Code(fn)
		if err != nil {
			return fn, Placement{}, fmt.Errorf("%s: %w", sym, err)
		}
		pl, err := Place(b.Arch, code)
		if err != nil {
			return fn, Placement{}, fmt.Errorf("%s: %w", sym, err)
		}
		return fn, pl, nil
	}
	rp := &RuntimeProbes{Recipe: bpf.Recipe{GoidOffset: rt.GoidOffset, StackHiOffset: rt.StackHiOffset, ParentGoidOffset: rt.ParentGoidOffset}}
	// newproc1(fn *funcval, callergp *g, callerpc uintptr) *g: without
	// g.parentGoid, callergp's goid (RBX) is read before it runs, for its
	// return to pair with.
	rp.Recipe.Creator = !rt.HasParentGoid()
	fn, pl, err := place("runtime.newproc1")
	if err != nil {
		return nil, err
	}
	if err := rp.placeGoCreate(b, fn, pl, opts); err != nil {
		return nil, err
	}
	if fn, pl, err = place("runtime.goexit1"); err != nil {
		return nil, err
	}
	rp.GoExit = rp.entry(fn, pl)
	if fn, pl, err = place("runtime.gopanic"); err != nil {
		return nil, err
	}
	rp.Panic = rp.entry(fn, pl)
	rp.PanicRecipe = rp.Recipe
	// gopanic(e any): the type in RAX, the data word in RBX.
	rp.PanicRecipe.Entry = []bpf.Capture{{Kind: bpf.CapEface, Reg: 0, Reg2: 1, MaxLen: bpf.StringSlotSize}}
	return rp, nil
}

// entry returns the address of fn's entry probe (placed pl), kept in
// OnCheck when it is the stack check's branch.
func (rp *RuntimeProbes) entry(fn Func, pl Placement) uint64 {
	a := fn.Entry + pl.Entry
	if pl.EntryOnCheck {
		rp.OnCheck = append(rp.OnCheck, a)
	}
	return a
}

// NewProbe places a probe on fn without a spec's captures: built-in sets
// add their own. ok is false when b has no such function.
func NewProbe(b *Binary, symbol string, id uint32, rt Runtime) (*Probe, bool, error) {
	fn, ok := b.Func(symbol)
	if !ok {
		return nil, false, nil
	}
	code, err := b.Code(fn)
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", symbol, err)
	}
	pl, err := Place(b.Arch, code)
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", symbol, err)
	}
	return &Probe{ID: id, Spec: Spec{Symbol: symbol}, Func: fn, Placement: pl, ErrorCapture: -1, HandleCapture: -1, ReceiverCapture: -1,
		Recipe: bpf.Recipe{Dedup: pl.Dedup, EntryIsReturn: pl.EntryIsReturn, GoidOffset: rt.GoidOffset, StackHiOffset: rt.StackHiOffset}}, true, nil
}

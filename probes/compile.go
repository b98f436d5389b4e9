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
}

// CapturedAttr is how one capture becomes an attribute.
type CapturedAttr struct {
	Key    string
	Type   string // int, uint, bool, string
	Size   int    // bytes, for sign extension of ints
	MaxLen int    // strings
}

// Compile checks spec against b and builds its probe. rt gives the runtime
// offsets the recipe needs.
func Compile(b *Binary, spec Spec, id uint32, rt Runtime) (*Probe, error) {
	fn, ok := b.Func(spec.Symbol)
	if !ok {
		msg := fmt.Sprintf("unknown symbol %s in %s", spec.Symbol, b.Path)
		if s := b.Suggest(spec.Symbol); len(s) > 0 {
			msg += " (did you mean " + strings.Join(s, ", ") + "?)"
		}
		return nil, fmt.Errorf("%s", msg)
	}
	code, err := b.Code(fn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Symbol, err)
	}
	pl, err := Place(code)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Symbol, err)
	}
	sig, err := b.SignatureFromDWARF(spec.Symbol)
	if err != nil {
		return nil, err
	}
	if sig == nil && spec.Signature != "" {
		if sig, err = ParseSignature(spec.Signature); err != nil {
			return nil, fmt.Errorf("%s: %w", spec.Symbol, err)
		}
	}
	p := &Probe{ID: id, Spec: spec, Func: fn, Sig: sig, Placement: pl, ErrorCapture: -1,
		Recipe: bpf.Recipe{Dedup: pl.Dedup, GoidOffset: rt.GoidOffset, StackHiOffset: rt.StackHiOffset}}

	if sig == nil {
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
	// A returned error, when the last result is one, becomes an error event.
	if n := len(sig.Results); n > 0 && sig.Results[n-1].Kind == KindError {
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

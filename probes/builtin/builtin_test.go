package builtin

import (
	"testing"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// TestCaptureBeforeError: captures that decode to attributes go before a
// completion probe's error and handle captures (the decoder pairs the
// attributes with the first captures), whose indices move on; string slots
// stay distinct.
func TestCaptureBeforeError(t *testing.T) {
	p := &probes.Probe{ErrorCapture: 0, HandleCapture: 1, ReceiverCapture: 0,
		Recipe: bpf.Recipe{
			Entry:  []bpf.Capture{{Kind: bpf.CapReg, Reg: 0}},
			Return: []bpf.Capture{{Kind: bpf.CapError, Reg: bpf.BaseSaved, Reg2: bpf.BaseSaved + 1, MaxLen: bpf.StringSlotSize}, {Kind: bpf.CapReg, Reg: 0}}}}
	capture(p, true, GRPCCode, field(bpf.BaseSaved+1, 4, 8, 16))
	capture(p, true, GRPCMessage, field(bpf.BaseSaved+1, 0, 8, 24))
	capture(p, false, GRPCMethod, field(3, 0, 40))
	ret := p.Recipe.Return
	if len(ret) != 4 || len(p.ReturnAttrs) != 2 || p.ReturnAttrs[0].Key != GRPCCode || p.ReturnAttrs[1].Key != GRPCMessage {
		t.Fatalf("return captures %+v, attributes %+v", ret, p.ReturnAttrs)
	}
	if ret[0].Kind != bpf.CapPath || ret[0].Size != 4 || ret[1].Kind != bpf.CapPath || ret[1].Size != 0 {
		t.Errorf("the attribute captures are not first: %+v", ret)
	}
	if p.ErrorCapture != 2 || ret[2].Kind != bpf.CapError || p.HandleCapture != 3 || ret[3].Kind != bpf.CapReg {
		t.Errorf("error at %d, handle at %d in %+v: want 2 and 3", p.ErrorCapture, p.HandleCapture, ret)
	}
	if ret[1].Slot == ret[2].Slot {
		t.Errorf("the message and the error share string slot %d", ret[1].Slot)
	}
	// At entry the receiver capture, which decodes to no attribute, moves
	// after the method.
	if len(p.EntryAttrs) != 1 || p.Recipe.Entry[0].Kind != bpf.CapPath || p.ReceiverCapture != 1 || p.Recipe.Entry[1].Kind != bpf.CapReg {
		t.Errorf("entry %+v, receiver at %d", p.Recipe.Entry, p.ReceiverCapture)
	}
}

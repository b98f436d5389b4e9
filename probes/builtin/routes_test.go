package builtin

import (
	"slices"
	"testing"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// TestRouterCaptures: each router's probe reads its route from the
// register the CALL it sits on passes it in, along the documented field
// path: gin's and echo's context (sync.Pool.Put's x, data word in RCX, its
// type word in RBX checked by the span side), chi's the same with its
// patterns' length, innermost and outermost pattern, gorilla/mux's *Route
// (RBX) through the embedded routeConf and routeRegexpGroup to the path
// template.
func TestRouterCaptures(t *testing.T) {
	offs := []uint16{10, 20, 30, 40}
	want := map[string][]bpf.Capture{
		RouterGin:   {{Kind: bpf.CapPath, Reg: 2, Hops: []uint16{}, Field: 10}},
		RouterEcho:  {{Kind: bpf.CapPath, Reg: 2, Hops: []uint16{}, Field: 10}},
		RouterEcho5: {{Kind: bpf.CapPath, Reg: 2, Hops: []uint16{}, Field: 10}},
		RouterChi: {{Kind: bpf.CapPath, Reg: 2, Hops: []uint16{}, Field: 18, Size: 8},
			{Kind: bpf.CapPath, Reg: 2, Hops: []uint16{}, Field: 20}, {Kind: bpf.CapPath, Reg: 2, Hops: []uint16{10}, Field: 0, Slot: 1}},
		RouterMux: {{Kind: bpf.CapPath, Reg: 1, Hops: []uint16{60}, Field: 40}},
	}
	for _, r := range routers {
		p := &probes.Probe{ErrorCapture: -1, HandleCapture: -1, ReceiverCapture: -1}
		r.capture(p, offs[:len(r.fields)])
		w := want[r.name]
		if len(p.Recipe.Entry) != len(w) || len(p.EntryAttrs) != len(w) {
			t.Errorf("%s: captures %+v, want %+v", r.name, p.Recipe.Entry, w)
			continue
		}
		for i, c := range p.Recipe.Entry {
			if c.Kind != w[i].Kind || c.Reg != w[i].Reg || !slices.Equal(c.Hops, w[i].Hops) || c.Field != w[i].Field || c.Size != w[i].Size || c.Slot != w[i].Slot {
				t.Errorf("%s capture %d (%s): %+v, want %+v", r.name, i, p.EntryAttrs[i].Key, c, w[i])
			}
		}
		if p.EntryAttrs[len(w)-1].Key == "" || (r.typeName != "") != (r.name != RouterMux) {
			t.Errorf("%s: keys %+v, context type %q", r.name, p.EntryAttrs, r.typeName)
		}
	}
}

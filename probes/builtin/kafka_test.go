package builtin

import (
	"testing"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// TestKafkaReturnCaptures: FetchMessage's return reads four strings (the
// message's topic, key and traceparent, the error's message) and sarama's
// sends a joined error's message too: each string its own slot, the error
// last, within the recipe's limits.
func TestKafkaReturnCaptures(t *testing.T) {
	fetch := &probes.Probe{ErrorCapture: -1, HandleCapture: -1, ReceiverCapture: -1}
	capture(fetch, true, KafkaMsgTopic, field(bpf.RegSP, 0, 8))
	capture(fetch, true, KafkaPartition, field(bpf.RegSP, 8, 24))
	kafkaKey(fetch, true, field(bpf.RegSP, 0, 48))
	capture(fetch, true, KafkaTraceparent, bpf.Capture{Kind: bpf.CapHdrs, Reg: bpf.RegSP, Field: 96, Stride: 16 + kafkaHeader, ValueAt: 16, MaxLen: bpf.StringSlotSize})
	kafkaErrorOf(fetch, 0, 1, 8)
	send := &probes.Probe{ErrorCapture: -1, HandleCapture: -1, ReceiverCapture: -1}
	capture(send, true, KafkaPartition, bpf.Capture{Kind: bpf.CapReg, Reg: 0, Size: 4})
	kafkaErrorOf(send, 2, 3, 2)
	for name, p := range map[string]*probes.Probe{"fetch": fetch, "send": send} {
		ret := p.Recipe.Return
		if len(ret) > bpf.MaxCaptures || p.ErrorCapture != len(ret)-1 || ret[p.ErrorCapture].Kind != bpf.CapError || len(p.ReturnAttrs) != len(ret)-1 {
			t.Errorf("%s: error at %d of %+v, attributes %+v", name, p.ErrorCapture, ret, p.ReturnAttrs)
		}
		slots := map[uint8]bool{}
		for _, c := range ret {
			if c.Kind == bpf.CapPath && c.Size == 0 || c.Kind == bpf.CapHdrs || c.Kind == bpf.CapError {
				if slots[c.Slot] || c.Slot >= bpf.StringSlots {
					t.Errorf("%s: string slot %d taken twice or out of range in %+v", name, c.Slot, ret)
				}
				slots[c.Slot] = true
			}
		}
	}
	if n := len(send.ReturnAttrs); n != 5 || send.ReturnAttrs[4].Key != KafkaJoinMessage {
		t.Errorf("sarama's send reads no joined error: %+v", send.ReturnAttrs)
	}
	if len(fetch.ReturnAttrs) != 5 {
		t.Errorf("kafka-go's fetch reads a joined error (it returns none): %+v", fetch.ReturnAttrs)
	}
}

// TestModuleOfMainModule: a library's own tool (sarama's
// kafka-console-producer, built from the module proxy) has the library as
// its main module, with a release: its fields' table entries are found by
// it; a main module in development has none.
func TestModuleOfMainModule(t *testing.T) {
	o := &offsets{b: &probes.Binary{Main: probes.Module{Path: sarama, Version: "v1.61.1"}}}
	if m, ok := o.module(sarama + ".ProducerMessage.Topic"); !ok || m.Version != "v1.61.1" {
		t.Errorf("sarama's own tool: %v %v", m, ok)
	}
	o = &offsets{b: &probes.Binary{Main: probes.Module{Path: sarama, Version: "(devel)"}}}
	if m, _ := o.module(sarama + ".ProducerMessage.Topic"); m.Version != "(unknown)" {
		t.Errorf("a main module in development: %v", m)
	}
}

package probes

import (
	"testing"

	"github.com/tcagent/tcagent/bpf"
)

// TestFailedIntegerReadIsUnreadable: an integer the kernel could not read
// is marked KEY.unreadable, never decoded as the 0 it left; one read is
// decoded, sign-extended to its size.
func TestFailedIntegerReadIsUnreadable(t *testing.T) {
	p := &Probe{EntryAttrs: []CapturedAttr{{Key: "done", Type: "int", Size: 4}, {Key: "n", Type: "int", Size: 4}, {Key: "ok", Type: "bool"}}}
	ev := &bpf.Event{NValues: 3}
	ev.Values[0] = bpf.Value{ReadFailed: true}
	ev.Values[1] = bpf.Value{A: 0xffffffff}
	ev.Values[2] = bpf.Value{A: 1, ReadFailed: true}
	got := map[string]any{}
	for _, a := range p.Attributes(ev, true, nil, nil) {
		got[string(a.Key)] = a.Value.AsInterface()
	}
	want := map[string]any{"done.unreadable": true, "n": int64(-1), "ok.unreadable": true}
	if len(got) != len(want) {
		t.Fatalf("attributes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

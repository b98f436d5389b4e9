package reader

import (
	"encoding/binary"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/bpf"
)

func TestDecode(t *testing.T) {
	raw := make([]byte, bpf.EventBigSize)
	le := binary.LittleEndian
	le.PutUint64(raw[0:], 123)
	le.PutUint64(raw[8:], 77)
	le.PutUint64(raw[16:], 4096)
	le.PutUint32(raw[24:], 5)
	le.PutUint32(raw[28:], 1000)
	le.PutUint32(raw[32:], 1001)
	le.PutUint32(raw[36:], 3)
	le.PutUint16(raw[40:], uint16(End))
	raw[42], raw[43] = 2, 1
	le.PutUint64(raw[bpf.EventHeaderSize:], 0xdead)
	le.PutUint64(raw[bpf.EventHeaderSize+bpf.EventValueSize:], 5)
	le.PutUint64(raw[bpf.EventHeaderSize+bpf.EventValueSize+24:], 0xfeed)
	raw[44] = 0b10 // value 1 failed
	raw[45] = 0b01 // value 0 met a nil pointer
	raw[46] = 1    // trace flags
	copy(raw[bpf.EventSize+bpf.StringSlotSize:], "hello")
	var r Record
	if err := r.Decode(raw); err != nil {
		t.Fatal(err)
	}
	if r.Time != 123 || r.Goroutine != 77 || r.Depth != 4096 || r.Probe != 5 || r.Pid != 1000 || r.Tid != 1001 || r.Lost != 3 || r.Kind != End || r.NValues != 2 || r.TraceFlags != 1 {
		t.Fatalf("header decoded wrong: %+v", r)
	}
	if r.Values[0].A != 0xdead || r.Values[1].A != 5 || r.Values[1].D != 0xfeed || !r.Values[1].ReadFailed || r.Values[0].ReadFailed || !r.Values[0].Nil || r.Values[1].Nil {
		t.Fatalf("values decoded wrong: %+v", r.Values[:2])
	}
	if s := string(r.String(1, 5)); s != "hello" {
		t.Fatalf("string slot 1 = %q", s)
	}
	if s := r.String(1, 1<<20); len(s) != bpf.StringSlotSize {
		t.Fatalf("a read longer than its slot returned %d bytes, want the slot's %d", len(s), bpf.StringSlotSize)
	}
	if s := r.String(bpf.StringSlots, 1); s != nil {
		t.Fatalf("a slot beyond the last returned %q", s)
	}
	if err := r.Decode(raw[:bpf.EventSize-1]); err == nil {
		t.Fatal("short record accepted")
	}
	if err := r.Decode(raw[:bpf.EventSize]); err == nil {
		t.Fatal("record flagged with strings but without them accepted")
	}
	raw[43] = 0
	if err := r.Decode(raw[:bpf.EventSize]); err != nil || r.String(1, 5) != nil {
		t.Fatalf("record without strings: %v, slot 1 %q", err, r.String(1, 5))
	}
	raw[42] = bpf.MaxCaptures + 1
	if err := r.Decode(raw); err == nil {
		t.Fatal("record with more values than captures accepted")
	}
	raw[42], raw[43] = 2, 1
	if n := testing.AllocsPerRun(100, func() { _ = r.Decode(raw) }); n != 0 {
		t.Fatalf("Decode allocates %v times", n)
	}
}

// TestTraceContext: a CapTrace value holds the span's trace id in A and B
// and its span id in C, big-endian as W3C writes them; D, when not zero,
// is the client span the kernel matched by connection, a remote caller
// in the same trace with the record's flags.
func TestTraceContext(t *testing.T) {
	var r Record
	r.NValues, r.TraceFlags = 2, 1
	r.Values[1] = Value{A: 0x0102030405060708, B: 0x090a0b0c0d0e0f10, C: 0x1112131415161718}
	tid, sid, caller := r.TraceContext(1)
	wantTID := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	wantSID := trace.SpanID{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18}
	if tid != wantTID || sid != wantSID {
		t.Fatalf("trace %s span %s, want %s %s", tid, sid, wantTID, wantSID)
	}
	if caller.IsValid() {
		t.Fatalf("no caller matched, got %v", caller)
	}
	r.Values[1].D = 0x2122232425262728
	_, _, caller = r.TraceContext(1)
	if !caller.IsValid() || !caller.IsRemote() || caller.TraceID() != wantTID || !caller.IsSampled() ||
		caller.SpanID() != (trace.SpanID{0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28}) {
		t.Fatalf("caller %+v, want a sampled remote span 2122232425262728 in trace %s", caller, wantTID)
	}
	r.TraceFlags = 0
	if _, _, caller = r.TraceContext(1); caller.IsSampled() {
		t.Fatalf("caller sampled without the record's sampled flag: %+v", caller)
	}
}

package reader

import (
	"encoding/binary"
	"fmt"

	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/bpf"
)

// Kind is what a record, and the event decoded from it, reports.
type Kind uint16

// Kinds (tracer.h enum event_kind).
const (
	Start    Kind = 1 // a probed function was entered
	End      Kind = 2 // it returned
	GoCreate Kind = 3 // a goroutine was created: Record.Values[0].A, Event.Child
	GoExit   Kind = 4 // the goroutine exited
	Panic    Kind = 5 // the goroutine started panicking
)

// Value is one capture's raw words; their meaning depends on the capture
// kind (see tracer.c capture()).
type Value struct {
	A, B, C, D uint64
	ReadFailed bool
	Nil        bool // a nil pointer on a field path
}

// Record is one ring-buffer record as the kernel wrote it (struct event in
// tracer.h), its words not interpreted yet. Decode reuses it: String's
// bytes are the record's and valid only until the next read.
type Record struct {
	Time      uint64 // CLOCK_MONOTONIC, ns
	Goroutine uint64
	Depth     uint64
	Probe     uint32
	Pid, Tid  uint32
	// Lost counts the goroutine's events lost before this one.
	Lost uint32
	Kind Kind
	// TraceFlags are, with a CapTrace, the W3C flags of the span's trace.
	TraceFlags uint8
	NValues    int
	Values     [bpf.MaxCaptures]Value
	strings    []byte
}

// Decode parses raw into r without allocating.
func (r *Record) Decode(raw []byte) error {
	if len(raw) < bpf.EventSize {
		return fmt.Errorf("record of %d bytes, want at least %d", len(raw), bpf.EventSize)
	}
	le := binary.LittleEndian
	r.Time = le.Uint64(raw[0:])
	r.Goroutine = le.Uint64(raw[8:])
	r.Depth = le.Uint64(raw[16:])
	r.Probe = le.Uint32(raw[24:])
	r.Pid = le.Uint32(raw[28:])
	r.Tid = le.Uint32(raw[32:])
	r.Lost = le.Uint32(raw[36:])
	r.Kind = Kind(le.Uint16(raw[40:]))
	r.NValues = int(raw[42])
	big := raw[43] != 0
	failed, isNil := raw[44], raw[45]
	r.TraceFlags = raw[46]
	if r.NValues > bpf.MaxCaptures {
		return fmt.Errorf("record with %d values, at most %d", r.NValues, bpf.MaxCaptures)
	}
	for i := 0; i < r.NValues; i++ {
		b := raw[bpf.EventHeaderSize+i*bpf.EventValueSize:]
		r.Values[i] = Value{A: le.Uint64(b), B: le.Uint64(b[8:]), C: le.Uint64(b[16:]), D: le.Uint64(b[24:]),
			ReadFailed: failed&(1<<i) != 0, Nil: isNil&(1<<i) != 0}
	}
	r.strings = nil
	if big {
		if len(raw) < bpf.EventBigSize {
			return fmt.Errorf("record with strings of %d bytes, want %d", len(raw), bpf.EventBigSize)
		}
		r.strings = raw[bpf.EventSize:bpf.EventBigSize]
	}
	return nil
}

// String returns the first n bytes of string slot slot (n is capped at the
// slot size), nil when the record carries no strings.
func (r *Record) String(slot uint8, n uint64) []byte {
	if r.strings == nil || int(slot) >= bpf.StringSlots {
		return nil
	}
	if n > bpf.StringSlotSize {
		n = bpf.StringSlotSize
	}
	off := int(slot) * bpf.StringSlotSize
	return r.strings[off : off+int(n)]
}

// TraceContext reads the trace context the kernel made for a call's span
// (--propagate) from value i, a CapTrace: the span's trace and span ids,
// and, when the kernel matched the call with a client span by connection
// (a server request that carried no context), that client span as a
// remote caller; an invalid caller otherwise.
func (r *Record) TraceContext(i int) (trace.TraceID, trace.SpanID, trace.SpanContext) {
	var tid trace.TraceID
	var sid trace.SpanID
	v := r.Values[i]
	binary.BigEndian.PutUint64(tid[:8], v.A)
	binary.BigEndian.PutUint64(tid[8:], v.B)
	binary.BigEndian.PutUint64(sid[:], v.C)
	if v.D == 0 {
		return tid, sid, trace.SpanContext{}
	}
	caller := trace.SpanContextConfig{TraceID: tid, TraceFlags: trace.TraceFlags(r.TraceFlags), Remote: true}
	binary.BigEndian.PutUint64(caller.SpanID[:], v.D)
	return tid, sid, trace.NewSpanContext(caller)
}

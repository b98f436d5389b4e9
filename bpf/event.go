package bpf

import (
	"encoding/binary"
	"fmt"
)

// Kind is what an event reports.
type Kind uint16

// Event kinds (tracer.h enum event_kind).
const (
	KindStart    Kind = 1
	KindEnd      Kind = 2
	KindGoCreate Kind = 3 // Goroutine created Values[0].A
	KindGoExit   Kind = 4
	KindPanic    Kind = 5
)

// Value is one capture's raw words; their meaning depends on the capture
// kind (see tracer.c capture()).
type Value struct {
	A, B, C, D uint64
	ReadFailed bool
	Nil        bool // a nil pointer on a field path
}

// Event is one decoded ring-buffer record. Decode reuses it: Strings refer to
// the record's bytes and are valid only until the next read.
type Event struct {
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
	Values     [MaxCaptures]Value
	strings    []byte
}

// Layout of struct event (tracer.h); TestLayout checks it against bpf2go's.
const (
	valueSize    = 32
	headerSize   = 48
	eventSize    = headerSize + MaxCaptures*valueSize
	eventBigSize = eventSize + StringSlots*StringSlotSize
)

// Decode parses raw into e without allocating.
func (e *Event) Decode(raw []byte) error {
	if len(raw) < eventSize {
		return fmt.Errorf("event of %d bytes, want at least %d", len(raw), eventSize)
	}
	le := binary.LittleEndian
	e.Time = le.Uint64(raw[0:])
	e.Goroutine = le.Uint64(raw[8:])
	e.Depth = le.Uint64(raw[16:])
	e.Probe = le.Uint32(raw[24:])
	e.Pid = le.Uint32(raw[28:])
	e.Tid = le.Uint32(raw[32:])
	e.Lost = le.Uint32(raw[36:])
	e.Kind = Kind(le.Uint16(raw[40:]))
	e.NValues = int(raw[42])
	big := raw[43] != 0
	failed, isNil := raw[44], raw[45]
	e.TraceFlags = raw[46]
	if e.NValues > MaxCaptures {
		return fmt.Errorf("event with %d values, at most %d", e.NValues, MaxCaptures)
	}
	for i := 0; i < e.NValues; i++ {
		b := raw[headerSize+i*valueSize:]
		e.Values[i] = Value{A: le.Uint64(b), B: le.Uint64(b[8:]), C: le.Uint64(b[16:]), D: le.Uint64(b[24:]),
			ReadFailed: failed&(1<<i) != 0, Nil: isNil&(1<<i) != 0}
	}
	e.strings = nil
	if big {
		if len(raw) < eventBigSize {
			return fmt.Errorf("event with strings of %d bytes, want %d", len(raw), eventBigSize)
		}
		e.strings = raw[eventSize:eventBigSize]
	}
	return nil
}

// String returns the first n bytes of string slot slot (n is capped at the
// slot size), nil when the event carries no strings.
func (e *Event) String(slot uint8, n uint64) []byte {
	if e.strings == nil || int(slot) >= StringSlots {
		return nil
	}
	if n > StringSlotSize {
		n = StringSlotSize
	}
	off := int(slot) * StringSlotSize
	return e.strings[off : off+int(n)]
}

package bpf

// The layout of struct event (tracer.h), the record every program writes
// into the ring buffer: a header, MaxCaptures values, and, for a record
// with strings (struct event_big), StringSlots string slots. The reader
// decodes it; TestLayout checks these against bpf2go's view of the C.
const (
	EventValueSize  = 32
	EventHeaderSize = 48
	EventSize       = EventHeaderSize + MaxCaptures*EventValueSize
	EventBigSize    = EventSize + StringSlots*StringSlotSize
)

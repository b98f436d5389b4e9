package channel

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Payload is the one context object a call publishes all of its lifecycle
// events on. Subscribers of different events of the same call meet on it, so
// a handler may leave state for a later one (see Value and SetValue). A
// subscriber must not keep a payload past the last event of its call: the
// publisher may reuse it for another call then.
//
// Result and error are tracked by presence, not by value: a function that
// returns nothing still has a result once it settled, and a nil result is a
// result. The binder's end rule depends on exactly that distinction.
type Payload struct {
	// Name identifies the operation (the probe's span name).
	Name string
	// Goroutine is the id of the goroutine the call started on.
	Goroutine uint64
	// Time is when the event being published happened. Publishers set it
	// before each event so that handlers can use kernel timestamps rather
	// than the time the event happens to be processed.
	Time time.Time
	// StartTime is when the call started; set by the publisher at start.
	StartTime time.Time
	// Attributes are the values captured when the call started (arguments).
	Attributes []attribute.KeyValue
	// EndAttributes are the values captured when the call returned
	// (results); set before end is published.
	EndAttributes []attribute.KeyValue
	// TraceID and SpanID, when valid, are the ids the span of the call must
	// have: made in the kernel (--propagate), where a request already
	// carried them out of the process.
	TraceID trace.TraceID
	SpanID  trace.SpanID
	// Caller, when valid, is the client span that sent the request a
	// server call serves, found by its connection in the kernel
	// (--propagate) when the request carried no trace context.
	Caller trace.SpanContext
	// EndReason is set by a publisher that ends a call it cannot follow to
	// its natural end (events lost, maximum age, goroutine or process gone,
	// agent detaching). Subscribers treat the next end or asyncEnd as final
	// and say why.
	EndReason string
	result    any
	hasResult bool
	err       error
	hasError  bool

	slots []slot
	// slotBuf backs slots for the usual one or two subscribers' values.
	slotBuf [2]slot
	restore []restore
	// restoreBuf backs restore for the usual one or two bound stores, so
	// that publishing a call allocates nothing for it.
	restoreBuf [2]restore
	// attrBuf holds the captured attributes when they fit, so that a call
	// costs one allocation for its payload and none for its attributes.
	// Sixteen: the http server's thirteen captures fit.
	attrBuf [16]attribute.KeyValue
}

// Reset makes p as new, for another call, keeping its inline buffers.
// Fields are cleared one by one: assigning a whole new Payload would
// rewrite (and, while the collector marks, put barriers on) every word of
// the buffers.
func (p *Payload) Reset() {
	p.Name, p.Goroutine, p.Time, p.StartTime = "", 0, time.Time{}, time.Time{}
	p.Attributes, p.EndAttributes = nil, nil
	p.TraceID, p.SpanID, p.Caller, p.EndReason = trace.TraceID{}, trace.SpanID{}, trace.SpanContext{}, ""
	p.result, p.hasResult, p.err, p.hasError = nil, false, nil, false
	clear(p.slots)
	p.slots = p.slots[:0]
	clear(p.restore)
	p.restore = p.restore[:0]
}

// SetAttributes copies attrs into p as its start attributes.
func (p *Payload) SetAttributes(attrs []attribute.KeyValue) {
	p.Attributes = p.copyAttrs(attrs, 0)
}

// SetEndAttributes copies attrs into p as its end attributes.
func (p *Payload) SetEndAttributes(attrs []attribute.KeyValue) {
	p.EndAttributes = p.copyAttrs(attrs, len(p.Attributes))
}

// copyAttrs copies attrs into the inline buffer from index from when they
// fit, else into a new slice.
func (p *Payload) copyAttrs(attrs []attribute.KeyValue, from int) []attribute.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	if from+len(attrs) <= len(p.attrBuf) && (from == 0 || &p.Attributes[0] == &p.attrBuf[0]) {
		return append(p.attrBuf[from:from:from+len(attrs)], attrs...)
	}
	return append([]attribute.KeyValue(nil), attrs...)
}

type slot struct {
	key, value any
}

type restore struct {
	store *Store
	prev  any
}

// SetResult records that the call settled with v (which may be nil).
func (p *Payload) SetResult(v any) {
	p.result, p.hasResult = v, true
}

// HasResult reports whether the call settled with a result.
func (p *Payload) HasResult() bool { return p.hasResult }

// Result returns the recorded result, nil when there is none.
func (p *Payload) Result() any { return p.result }

// SetError records that the call failed with err.
func (p *Payload) SetError(err error) {
	p.err, p.hasError = err, true
}

// HasError reports whether the call failed.
func (p *Payload) HasError() bool { return p.hasError }

// Err returns the recorded error, nil when there is none.
func (p *Payload) Err() error { return p.err }

// Value returns what SetValue stored under key.
func (p *Payload) Value(key any) any {
	for i := range p.slots {
		if p.slots[i].key == key {
			return p.slots[i].value
		}
	}
	return nil
}

// SetValue stores v under key; subscribers use their own unexported key type
// so that they never see each other's state.
func (p *Payload) SetValue(key, v any) {
	for i := range p.slots {
		if p.slots[i].key == key {
			p.slots[i].value = v
			return
		}
	}
	if p.slots == nil {
		p.slots = p.slotBuf[:0]
	}
	p.slots = append(p.slots, slot{key, v})
}

// Error is an error seen in a traced program: only its dynamic type name and
// message survive the trip out of the process.
type Error struct {
	Type    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// TypeName is the Go type of the error in the traced program.
func (e *Error) TypeName() string { return e.Type }

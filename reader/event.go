package reader

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Event is one record decoded for the lifecycle: its time on the wall
// clock, its captures as attributes, its error and its trace context
// interpreted with the probe's recipe. A Decoder reuses it from record to
// record: a sink that keeps anything copies it.
type Event struct {
	Kind      Kind
	Time      time.Time
	Goroutine uint64
	Depth     uint64
	Probe     uint32
	// Lost is the kernel's count of this goroutine's lost events so far.
	Lost uint32
	// Attributes captured by the event (arguments at start, results at
	// end). The tracker copies them: the decoder reuses the slice.
	Attributes []attribute.KeyValue
	// Err is the error the call returned, nil for none.
	Err error
	// TraceID and SpanID are, at a start, the ids the kernel made for the
	// call's span (--propagate); zero otherwise.
	TraceID trace.TraceID
	SpanID  trace.SpanID
	// Caller is, at the start of a server span whose request carried no
	// trace context, the client span the kernel matched it with by
	// connection (--propagate); invalid otherwise.
	Caller trace.SpanContext
	// Handle is, at the end of a completion-handle probe, the handle it
	// returned; at the start of a completion probe, its receiver.
	Handle uint64
	// Child is the goroutine a GoCreate created.
	Child uint64
	// PanicMessage is what a Panic panicked with, e.g. "panic: boom".
	PanicMessage string
}

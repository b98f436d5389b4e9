package binder

import (
	"context"
	"sync"
	"sync/atomic"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// maxJoins bounds the traces a session remembers having joined.
const maxJoins = 65536

// TraceJoin stands in front of a session's exporter and moves the spans of
// a trace tcagent began into the trace the program's own OpenTelemetry SDK
// began for the same work, so that one request is one trace, whoever made
// its spans. tcagent cannot change the program's spans (it never writes
// into the program), so its own follow: a trace whose root span tcagent
// started without a caller's context joins the trace of the first
// recording span the program starts while it is open (a RoleJoin probe's
// end, see Factories), and
// its spans that end from then on are exported in that trace, their own
// parents kept. A trace that continues a caller's context is never moved:
// the caller's trace wins.
type TraceJoin struct {
	next   sdktrace.SpanProcessor
	joined atomic.Uint64

	mu sync.Mutex
	// own holds the traces begun here whose root is still open: the root's
	// span id, by trace.
	own map[trace.TraceID]trace.SpanID
	// to maps a trace begun here to the program's trace it joined; ring
	// holds the order they were added in, to forget the oldest first.
	to   map[trace.TraceID]trace.TraceID
	ring []trace.TraceID
	pos  int
}

// NewTraceJoin returns the join in front of next, the session's exporter.
func NewTraceJoin(next sdktrace.SpanProcessor) *TraceJoin {
	return &TraceJoin{next: next, own: map[trace.TraceID]trace.SpanID{}, to: map[trace.TraceID]trace.TraceID{}}
}

// join moves trace from into trace to, when from was begun here, is still
// open, and has joined no other; it reports whether it did.
func (j *TraceJoin) join(from, to trace.TraceID) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, own := j.own[from]; !own || from == to || !to.IsValid() {
		return false
	}
	if _, done := j.to[from]; done {
		return false
	}
	if len(j.ring) < maxJoins {
		j.ring = append(j.ring, from)
	} else {
		delete(j.to, j.ring[j.pos])
		j.ring[j.pos] = from
		j.pos = (j.pos + 1) % maxJoins
	}
	j.to[from] = to
	j.joined.Add(1)
	return true
}

// joinedTo returns the trace from joined, the zero id for none.
func (j *TraceJoin) joinedTo(from trace.TraceID) trace.TraceID {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.to[from]
}

// Joined returns how many traces begun here joined one of the program's.
func (j *TraceJoin) Joined() uint64 { return j.joined.Load() }

// OnStart implements sdktrace.SpanProcessor: it notes the roots begun here.
func (j *TraceJoin) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	if !s.Parent().IsValid() {
		sc := s.SpanContext()
		j.mu.Lock()
		j.own[sc.TraceID()] = sc.SpanID()
		j.mu.Unlock()
	}
	j.next.OnStart(ctx, s)
}

// OnEnd implements sdktrace.SpanProcessor: a span of a joined trace is
// exported in the program's trace.
func (j *TraceJoin) OnEnd(s sdktrace.ReadOnlySpan) {
	sc := s.SpanContext()
	j.mu.Lock()
	if root, ok := j.own[sc.TraceID()]; ok && root == sc.SpanID() {
		delete(j.own, sc.TraceID())
	}
	to, ok := j.to[sc.TraceID()]
	j.mu.Unlock()
	if ok {
		s = joinedSpan{ReadOnlySpan: s, trace: to}
	}
	j.next.OnEnd(s)
}

// Shutdown implements sdktrace.SpanProcessor.
func (j *TraceJoin) Shutdown(ctx context.Context) error { return j.next.Shutdown(ctx) }

// ForceFlush implements sdktrace.SpanProcessor.
func (j *TraceJoin) ForceFlush(ctx context.Context) error { return j.next.ForceFlush(ctx) }

// joinedSpan is an ended span moved into another trace.
type joinedSpan struct {
	sdktrace.ReadOnlySpan
	trace trace.TraceID
}

func (s joinedSpan) SpanContext() trace.SpanContext {
	return s.ReadOnlySpan.SpanContext().WithTraceID(s.trace)
}

func (s joinedSpan) Parent() trace.SpanContext {
	p := s.ReadOnlySpan.Parent()
	if p.IsValid() && !p.IsRemote() {
		return p.WithTraceID(s.trace)
	}
	return p
}

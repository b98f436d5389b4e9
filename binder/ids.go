package binder

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
)

type idsKey struct{}

// payloadIDs are the ids one span must have; used once, so that spans
// started from a context derived from its span's get ids of their own.
type payloadIDs struct {
	trace trace.TraceID
	span  trace.SpanID
	used  atomic.Bool
}

// WithPayloadIDs returns ctx carrying the ids p says its span must have
// (made in the kernel, where a request may already have carried them out),
// for PayloadIDs to hand the SDK for the next span started with it; ctx
// itself when p has none.
func WithPayloadIDs(ctx context.Context, p *channel.Payload) context.Context {
	if !p.SpanID.IsValid() {
		return ctx
	}
	return context.WithValue(ctx, idsKey{}, &payloadIDs{trace: p.TraceID, span: p.SpanID})
}

// take returns the ids ctx carries, unless a span took them already.
func take(ctx context.Context) (*payloadIDs, bool) {
	ids, ok := ctx.Value(idsKey{}).(*payloadIDs)
	return ids, ok && ids.used.CompareAndSwap(false, true)
}

// PayloadIDs is an SDK IDGenerator (sdktrace.WithIDGenerator) that gives a
// span the ids its payload carries (see WithPayloadIDs): a root span takes
// the payload's trace id, any span its span id. Without them it makes
// random ids, as the SDK's own generator does.
type PayloadIDs struct {
	mu  sync.Mutex
	rng *rand.ChaCha8
}

// NewPayloadIDs returns a generator seeded from the system's randomness.
func NewPayloadIDs() *PayloadIDs {
	var seed [32]byte
	crand.Read(seed[:])
	return &PayloadIDs{rng: rand.NewChaCha8(seed)}
}

// NewIDs returns the ids of a root span.
func (g *PayloadIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	ids, ok := take(ctx)
	if ok && ids.trace.IsValid() {
		return ids.trace, ids.span
	}
	var tid trace.TraceID
	g.mu.Lock()
	defer g.mu.Unlock()
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], g.rng.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], g.rng.Uint64())
	}
	if ok {
		return tid, ids.span
	}
	return tid, g.spanID()
}

// NewSpanID returns the id of a span in trace traceID.
func (g *PayloadIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if ids, ok := take(ctx); ok {
		return ids.span
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.spanID()
}

func (g *PayloadIDs) spanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], g.rng.Uint64())
	}
	return sid
}

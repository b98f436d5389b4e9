package binder

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

// Shaper turns a built-in probe's raw captures into its span: name, kind
// and semantic-convention attributes at start, and what only the end knows
// (a status code, a route) before it ends. A Start that returns no name
// opts the call out: it gets no span, and the enclosing one stays active.
type Shaper interface {
	Start(p *channel.Payload) (name string, kind trace.SpanKind, attrs []attribute.KeyValue)
	End(span trace.Span, p *channel.Payload)
}

// RemoteParenter is a Shaper that can continue a trace begun elsewhere: an
// incoming request's trace context.
type RemoteParenter interface {
	// RemoteParent also says how many trace context values it ignored as
	// malformed or oversized: the caller counts them for its process.
	RemoteParent(p *channel.Payload) (sc trace.SpanContext, ok bool, invalid int)
}

// SpanSide is the span code of the built-in sets (binder/semconv), found by
// a probe's role: the binder knows how to bind each kind of role, the span
// side what a built-in's captures mean.
type SpanSide interface {
	// Shaper shapes a RoleSemconv probe's spans.
	Shaper(r probes.Role) (Shaper, bool)
	// Enricher puts a named RoleEnrich probe's entry captures on the span
	// active where it was called.
	Enricher(r probes.Role) (func(span trace.Span, p *channel.Payload), bool)
	// Joiner reads, at a RoleJoin probe's end, the span the program's own
	// SDK started; false when there is none worth joining.
	Joiner(r probes.Role) (func(p *channel.Payload) (trace.SpanContext, bool), bool)
}

// Factories turn the roles of one session's probes into GetSpans and
// Options, and count what their spans' trace contexts say.
type Factories struct {
	Tracer *Tracer
	// Side is the built-in sets' span code; nil when only custom probes
	// are bound.
	Side SpanSide
	// Join, when set, is the session's trace join (RoleJoin probes need
	// it): spans are exported through it.
	Join *TraceJoin

	// TraceMismatches counts, with --propagate, spans whose parent is in
	// another trace than the one the kernel made for them.
	TraceMismatches atomic.Uint64
	// InvalidContext counts incoming trace context values ignored as
	// malformed or oversized.
	InvalidContext atomic.Uint64
}

// For returns how the calls of p, published on ch, become spans: the
// GetSpan its role asks for and the options of its binding. A role the
// span side does not know is an error (a built-in's two sides disagree).
func (f *Factories) For(ch *channel.TracingChannel, p *probes.Probe) (GetSpan, Options, error) {
	var opts Options
	if p.Spec.CaptureError {
		opts.CaptureError = CaptureAll
	}
	r := p.Role
	missing := func(what string) (GetSpan, Options, error) {
		return nil, opts, fmt.Errorf("%s: no %s for role %q", p.Spec.Symbol, what, r.Name)
	}
	switch r.Kind {
	case probes.RoleSpan:
		opts.BeforeSpanEnd = setEndAttributes
		return SpanFactory(f.Tracer, spanKind(p.Spec.Kind)), opts, nil
	case probes.RoleSemconv:
		shape, ok := f.shaper(r)
		if !ok {
			return missing("shaper")
		}
		opts.BeforeSpanEnd = shape.End
		return f.shaped(shape), opts, nil
	case probes.RoleEnrich:
		if r.Name == "" {
			return enrichEnclosing(ch, setStartAttributes, setEndAttributes), opts, nil
		}
		var enrich func(trace.Span, *channel.Payload)
		ok := false
		if f.Side != nil {
			enrich, ok = f.Side.Enricher(r)
		}
		if !ok {
			return missing("enricher")
		}
		return enrichEnclosing(ch, enrich, setEndAttributes), opts, nil
	case probes.RoleJoin:
		var spanOf func(*channel.Payload) (trace.SpanContext, bool)
		ok := false
		if f.Side != nil {
			spanOf, ok = f.Side.Joiner(r)
		}
		if !ok {
			return missing("joiner")
		}
		if f.Join == nil {
			return nil, opts, fmt.Errorf("%s: role %q joins traces, but the session has no trace join", p.Spec.Symbol, r.Name)
		}
		return enrichEnclosing(ch, nil, f.joinAtEnd(spanOf)), opts, nil
	}
	return nil, opts, fmt.Errorf("%s: its role publishes nothing", p.Spec.Symbol)
}

func (f *Factories) shaper(r probes.Role) (Shaper, bool) {
	if f.Side == nil {
		return nil, false
	}
	return f.Side.Shaper(r)
}

// checkTrace counts, with --propagate, a span whose parent is in another
// trace than the one the kernel made for it (and a request may have carried
// out): the two disagree. A parent whose trace joined the program's own,
// which the kernel adopted, agrees.
func (f *Factories) checkTrace(p *channel.Payload, parent trace.TraceID) {
	if p.TraceID.IsValid() && parent.IsValid() && parent != p.TraceID && (f.Join == nil || f.Join.joinedTo(parent) != p.TraceID) {
		f.TraceMismatches.Add(1)
	}
}

// shaped opens the span of a built-in probe: its shaper names it and gives
// its semantic-convention attributes, or opts the call out with no name.
// Without an active span it continues the trace context the call received,
// or else the client span the kernel matched by connection.
func (f *Factories) shaped(shape Shaper) GetSpan {
	rp, _ := shape.(RemoteParenter)
	return func(parent trace.Span, p *channel.Payload) trace.Span {
		name, kind, attrs := shape.Start(p)
		if name == "" {
			return nil
		}
		ctx := WithPayloadIDs(context.Background(), p)
		var parentTrace trace.TraceID
		if parent != nil {
			ctx = trace.ContextWithSpan(ctx, parent)
			parentTrace = parent.SpanContext().TraceID()
		} else if rp != nil {
			sc, ok, bad := rp.RemoteParent(p)
			f.InvalidContext.Add(uint64(bad))
			if !ok && p.Caller.IsValid() {
				sc, ok = p.Caller, true
			}
			if ok {
				ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
				parentTrace = sc.TraceID()
			}
		}
		f.checkTrace(p, parentTrace)
		return f.Tracer.StartSpan(ctx, name, kind, attrs, p.Time)
	}
}

type enclosingKey struct{}

// enrichEnclosing is the GetSpan of probes that open no span of their own:
// atStart (when set) is given the span active where they were called, and
// atEnd the same span when the call ends.
func enrichEnclosing(ch *channel.TracingChannel, atStart, atEnd func(trace.Span, *channel.Payload)) GetSpan {
	ch.Subscribe(&channel.Handlers{End: func(p *channel.Payload) {
		if span, ok := p.Value(enclosingKey{}).(trace.Span); ok {
			atEnd(span, p)
		}
	}})
	return func(parent trace.Span, p *channel.Payload) trace.Span {
		if parent != nil {
			if atStart != nil {
				atStart(parent, p)
			}
			p.SetValue(enclosingKey{}, parent)
		}
		return nil
	}
}

func setStartAttributes(span trace.Span, p *channel.Payload) { span.SetAttributes(p.Attributes...) }

func setEndAttributes(span trace.Span, p *channel.Payload) { span.SetAttributes(p.EndAttributes...) }

// joinAtEnd makes the end of a probe on the program's own OpenTelemetry SDK
// join the trace of the enclosing span to the trace of the span the
// program started (see TraceJoin).
func (f *Factories) joinAtEnd(spanOf func(*channel.Payload) (trace.SpanContext, bool)) func(trace.Span, *channel.Payload) {
	return func(enclosing trace.Span, p *channel.Payload) {
		if sc, ok := spanOf(p); ok {
			f.Join.join(enclosing.SpanContext().TraceID(), sc.TraceID())
		}
	}
}

// spanKind is the span kind a spec names: server, client, producer,
// consumer; internal for anything else.
func spanKind(k string) trace.SpanKind {
	switch k {
	case "server":
		return trace.SpanKindServer
	case "client":
		return trace.SpanKindClient
	case "producer":
		return trace.SpanKindProducer
	case "consumer":
		return trace.SpanKindConsumer
	}
	return trace.SpanKindInternal
}

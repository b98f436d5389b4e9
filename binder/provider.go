package binder

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// ProviderOptions configure a Provider as the SDK's TracerProvider options
// would: the SDK's samplers, id generators, span limits and span processors
// (exporters, the batcher, span metrics) plug in unchanged.
type ProviderOptions struct {
	Resource   *resource.Resource
	Processors []sdktrace.SpanProcessor
	// Sampler decides per span; nil samples as the SDK's default does
	// (parent-based, always on).
	Sampler sdktrace.Sampler
	// IDs makes span and trace ids; nil is NewPayloadIDs (random ids, or
	// the ids a payload carries).
	IDs sdktrace.IDGenerator
	// Limits bound each span; nil is sdktrace.NewSpanLimits (the
	// OTEL_SPAN_* variables, else the SDK's defaults).
	Limits *sdktrace.SpanLimits
}

// Provider is the agent's TracerProvider. Its spans record straight into
// the ended span the processors receive: the SDK's recording span copies
// and de-duplicates its attributes on every call and snapshots the span at
// its end, which cost the agent more CPU per span than the rest of its
// pipeline. It keeps the SDK's semantics (sampling, ids, limits and their
// dropped counts, status precedence, child counts) for everything the agent
// records; bench/README §8c says what it measured.
type Provider struct {
	embedded.TracerProvider

	res     *resource.Resource
	sampler sdktrace.Sampler
	ids     sdktrace.IDGenerator
	limits  sdktrace.SpanLimits

	// procs is nil once Shutdown began: later spans are not recorded.
	procs    atomic.Pointer[[]sdktrace.SpanProcessor]
	shutdown sync.Once
}

// NewProvider returns a provider with o's processors, sampler, ids and
// limits.
func NewProvider(o ProviderOptions) *Provider {
	p := &Provider{res: o.Resource, sampler: o.Sampler, ids: o.IDs}
	if p.res == nil {
		p.res = resource.Empty()
	}
	if p.sampler == nil {
		p.sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	if p.ids == nil {
		p.ids = NewPayloadIDs()
	}
	if o.Limits != nil {
		p.limits = *o.Limits
	} else {
		p.limits = sdktrace.NewSpanLimits()
	}
	procs := append([]sdktrace.SpanProcessor(nil), o.Processors...)
	p.procs.Store(&procs)
	return p
}

// Tracer returns a tracer whose spans carry the instrumentation scope
// name and opts describe.
func (p *Provider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return p.NewTracer(name, opts...)
}

// NewTracer is Tracer for the binder's span factories, which start spans
// with StartSpan.
func (p *Provider) NewTracer(name string, opts ...trace.TracerOption) *Tracer {
	c := trace.NewTracerConfig(opts...)
	return &Tracer{provider: p, scope: instrumentation.Scope{Name: name, Version: c.InstrumentationVersion(),
		SchemaURL: c.SchemaURL(), Attributes: c.InstrumentationAttributes()}}
}

// ForceFlush flushes every processor.
func (p *Provider) ForceFlush(ctx context.Context) error {
	procs := p.procs.Load()
	if procs == nil {
		return nil
	}
	var err error
	for _, sp := range *procs {
		err = errors.Join(err, sp.ForceFlush(ctx))
	}
	return err
}

// Shutdown shuts every processor down, once; spans started afterwards are
// not recorded.
func (p *Provider) Shutdown(ctx context.Context) error {
	var err error
	p.shutdown.Do(func() {
		procs := p.procs.Swap(nil)
		for _, sp := range *procs {
			if e := ctx.Err(); e != nil {
				err = errors.Join(err, e)
				return
			}
			err = errors.Join(err, sp.Shutdown(ctx))
		}
	})
	return err
}

// Tracer starts the Provider's spans.
type Tracer struct {
	embedded.Tracer
	provider *Provider
	scope    instrumentation.Scope
}

// Start implements trace.Tracer as the SDK's tracer does: the span is a
// child of the span in ctx (unless WithNewRoot), its ids come from the
// provider's generator, the sampler decides whether it records and is
// sampled, and the processors hear of a recording span at its start.
func (t *Tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := trace.NewSpanStartConfig(opts...)
	s := t.start(ctx, name, cfg.SpanKind(), cfg.Attributes(), cfg.Timestamp(), cfg.Links(), cfg.NewRoot())
	return trace.ContextWithSpan(ctx, s), s
}

// StartSpan is Start for the binder's span factories, without the options
// made and copied per span: a span of kind named name, a child of the span
// in ctx, with attrs, starting at at (now when zero).
func (t *Tracer) StartSpan(ctx context.Context, name string, kind trace.SpanKind, attrs []attribute.KeyValue, at time.Time) trace.Span {
	return t.start(ctx, name, kind, attrs, at, nil, false)
}

func (t *Tracer) start(ctx context.Context, name string, kind trace.SpanKind, attrs []attribute.KeyValue, at time.Time,
	links []trace.Link, newRoot bool) trace.Span {
	parentSpan := trace.SpanFromContext(ctx)
	pctx := ctx // what the ids and the sampler see
	var psc trace.SpanContext
	if newRoot {
		pctx = trace.ContextWithSpanContext(ctx, psc)
	} else {
		psc = parentSpan.SpanContext()
	}
	p := t.provider
	var tid trace.TraceID
	var sid trace.SpanID
	if !psc.TraceID().IsValid() {
		tid, sid = p.ids.NewIDs(pctx)
	} else {
		tid, sid = psc.TraceID(), p.ids.NewSpanID(pctx, psc.TraceID())
	}
	res := p.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: pctx, TraceID: tid, Name: name,
		Kind: kind, Attributes: attrs, Links: links})
	flags := psc.TraceFlags() &^ trace.FlagsSampled
	if res.Decision == sdktrace.RecordAndSample {
		flags |= trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: res.Tracestate})
	procs := p.procs.Load()
	if res.Decision == sdktrace.Drop || procs == nil {
		return trace.SpanFromContext(trace.ContextWithSpanContext(ctx, sc)) // records nothing
	}
	if ps, ok := parentSpan.(*span); ok {
		ps.addChild()
	}
	if at.IsZero() {
		at = time.Now()
	}
	s := &span{tracer: t, name: name, sc: sc, parent: psc, kind: trace.ValidateSpanKind(kind),
		start: at, attrs: make([]attribute.KeyValue, 0, len(res.Attributes)+len(attrs)+endAttrRoom)}
	s.setAttributes(res.Attributes)
	s.setAttributes(attrs)
	for _, l := range links {
		s.addLink(l)
	}
	for _, sp := range *procs {
		sp.OnStart(ctx, s)
	}
	return s
}

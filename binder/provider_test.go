package binder

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
)

// seqIDs makes the same ids in the same order for both providers compared.
type seqIDs struct {
	mu sync.Mutex
	n  byte
}

func (g *seqIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	return trace.TraceID{1, g.n}, trace.SpanID{2, g.n}
}

func (g *seqIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	return trace.SpanID{3, g.n}
}

// recorder keeps the ended spans and counts starts.
type recorder struct {
	mu      sync.Mutex
	started int
	ended   []sdktrace.ReadOnlySpan
}

func (r *recorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {
	r.mu.Lock()
	r.started++
	r.mu.Unlock()
}
func (r *recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	r.mu.Lock()
	r.ended = append(r.ended, s)
	r.mu.Unlock()
}
func (r *recorder) Shutdown(context.Context) error   { return nil }
func (r *recorder) ForceFlush(context.Context) error { return nil }

type limitsCase struct {
	name    string
	limits  sdktrace.SpanLimits
	sampler sdktrace.Sampler
	// sdkHidesDrops: with zero event and link limits the SDK reports no
	// dropped events or links (it reports the count only for a span that
	// kept some); the Provider counts them.
	sdkHidesDrops bool
}

var res = resource.NewSchemaless(attribute.String("service.name", "svc"), attribute.Int("process.pid", 7))

// both runs script against the SDK's TracerProvider and a Provider with
// the same resource, sampler, ids and limits, and returns what each exported.
func both(t *testing.T, c limitsCase, script func(tr trace.Tracer, factory func(trace.SpanKind) GetSpan)) (sdk, ours *recorder) {
	t.Helper()
	sdk, ours = &recorder{}, &recorder{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(sdk),
		sdktrace.WithSampler(c.sampler), sdktrace.WithIDGenerator(&seqIDs{}), sdktrace.WithRawSpanLimits(c.limits))
	sdkTracer := tp.Tracer("scope", trace.WithInstrumentationVersion("v1"))
	script(sdkTracer, func(k trace.SpanKind) GetSpan { return sdkSpanFactory(sdkTracer, k) })
	lim := c.limits
	p := NewProvider(ProviderOptions{Resource: res, Processors: []sdktrace.SpanProcessor{ours}, Sampler: c.sampler,
		IDs: &seqIDs{}, Limits: &lim})
	tr := p.NewTracer("scope", trace.WithInstrumentationVersion("v1"))
	script(tr, func(k trace.SpanKind) GetSpan { return SpanFactory(tr, k) })
	return sdk, ours
}

// sdkSpanFactory is SpanFactory as it was over the SDK's tracer: what
// the Provider's spans are compared with.
func sdkSpanFactory(tracer trace.Tracer, kind trace.SpanKind) GetSpan {
	return func(parent trace.Span, p *channel.Payload) trace.Span {
		ctx := WithPayloadIDs(context.Background(), p)
		if parent != nil {
			ctx = trace.ContextWithSpan(ctx, parent)
		}
		opts := []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(p.Attributes...)}
		if !p.Time.IsZero() {
			opts = append(opts, trace.WithTimestamp(p.Time))
		}
		_, span := tracer.Start(ctx, p.Name, opts...)
		return span
	}
}

// sameSpans fails unless want and got hold the same spans, field by field.
func sameSpans(t *testing.T, want, got *recorder, sdkHidesDrops bool) {
	t.Helper()
	if want.started != got.started {
		t.Errorf("OnStart: SDK %d, Provider %d", want.started, got.started)
	}
	if len(want.ended) != len(got.ended) {
		t.Fatalf("ended spans: SDK %d, Provider %d", len(want.ended), len(got.ended))
	}
	for i := range want.ended {
		w, g := want.ended[i], got.ended[i]
		fields := []struct {
			name string
			w, g any
		}{
			{"name", w.Name(), g.Name()}, {"context", w.SpanContext(), g.SpanContext()}, {"parent", w.Parent(), g.Parent()},
			{"kind", w.SpanKind(), g.SpanKind()}, {"start", w.StartTime(), g.StartTime()}, {"end", w.EndTime(), g.EndTime()},
			{"attributes", w.Attributes(), g.Attributes()}, {"events", w.Events(), g.Events()}, {"links", w.Links(), g.Links()},
			{"status", w.Status(), g.Status()}, {"scope", w.InstrumentationScope(), g.InstrumentationScope()},
			{"resource", w.Resource().Attributes(), g.Resource().Attributes()},
			{"dropped attributes", w.DroppedAttributes(), g.DroppedAttributes()},
			{"dropped events", w.DroppedEvents(), g.DroppedEvents()}, {"dropped links", w.DroppedLinks(), g.DroppedLinks()},
			{"children", w.ChildSpanCount(), g.ChildSpanCount()},
		}
		for _, f := range fields {
			if sdkHidesDrops && (f.name == "dropped events" || f.name == "dropped links") {
				continue
			}
			if !reflect.DeepEqual(f.w, f.g) {
				t.Errorf("span %d (%s) %s: SDK %v, Provider %v", i, w.Name(), f.name, f.w, f.g)
			}
		}
	}
}

var t0 = time.Unix(1700000000, 123456789)

// script is a synthetic stream of what the binder and the span sides do
// to spans: a server span with attributes set at start and again before
// its end (repeated keys, an invalid one, long and invalid UTF-8 strings),
// a child that fails with an exception event, a sampled-out root, status
// precedence, a rename, links.
func script(tr trace.Tracer, _ func(trace.SpanKind) GetSpan) {
	long := strings.Repeat("é", 40) + "\xff" + strings.Repeat("x", 40)
	ctx, root := tr.Start(context.Background(), "GET", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0),
		trace.WithAttributes(attribute.String("http.request.method", "GET"), attribute.String("url.path", "/a"),
			attribute.String("url.path", "/b"), attribute.String("", "invalid"), attribute.String("long", long)),
		trace.WithLinks(trace.Link{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}}),
			Attributes: []attribute.KeyValue{attribute.Int("a", 1), attribute.Int("b", 2), attribute.Int("c", 3)}}))
	_, child := tr.Start(ctx, "child", trace.WithTimestamp(t0.Add(time.Millisecond)), trace.WithAttributes(attribute.Int("n", 1)))
	child.SetStatus(codes.Error, "boom")
	child.SetStatus(codes.Unset, "")
	for i := range 5 {
		child.AddEvent("exception", trace.WithTimestamp(t0.Add(time.Duration(i)*time.Microsecond)),
			trace.WithAttributes(attribute.String("exception.type", "E"), attribute.String("exception.message", "boom"),
				attribute.Int("i", i)))
	}
	child.RecordError(errors.New("plain"), trace.WithTimestamp(t0.Add(time.Second)))
	child.SetAttributes(attribute.StringSlice("ss", []string{"short", long}), attribute.Bool("ok", true), attribute.Float64("f", 1.5))
	child.End(trace.WithTimestamp(t0.Add(2 * time.Millisecond)))
	child.SetAttributes(attribute.Int("after", 1)) // ignored: ended
	root.SetName("GET /b")
	root.SetAttributes(attribute.String("http.route", "/b"), attribute.Int("http.response.status_code", 200),
		attribute.String("url.path", "/c"), attribute.String("k1", "v"), attribute.String("k2", "v"), attribute.String("k3", "v"))
	root.SetStatus(codes.Ok, "ignored")
	root.SetStatus(codes.Error, "too late")
	root.End(trace.WithTimestamp(t0.Add(3 * time.Millisecond)))
	root.End(trace.WithTimestamp(t0.Add(4 * time.Millisecond))) // once only
	_, lone := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, TraceFlags: 0, Remote: true})), "remote-unsampled", trace.WithTimestamp(t0))
	lone.End(trace.WithTimestamp(t0.Add(time.Millisecond)))
	_, nr := tr.Start(ctx, "new-root", trace.WithNewRoot(), trace.WithTimestamp(t0))
	nr.End(trace.WithTimestamp(t0.Add(time.Millisecond)))
}

// TestProviderMatchesSDK: under default, tight and no limits, and under
// each kind of sampler, the Provider exports what the SDK's provider does.
func TestProviderMatchesSDK(t *testing.T) {
	tight := sdktrace.SpanLimits{AttributeValueLengthLimit: 10, AttributeCountLimit: 5, EventCountLimit: 3,
		LinkCountLimit: 1, AttributePerEventCountLimit: 2, AttributePerLinkCountLimit: 2}
	none := sdktrace.SpanLimits{AttributeValueLengthLimit: -1, AttributeCountLimit: -1, EventCountLimit: -1,
		LinkCountLimit: -1, AttributePerEventCountLimit: -1, AttributePerLinkCountLimit: -1}
	zero := sdktrace.SpanLimits{}
	for _, c := range []limitsCase{
		{"defaults", sdktrace.NewSpanLimits(), sdktrace.ParentBased(sdktrace.AlwaysSample()), false},
		{"tight", tight, sdktrace.ParentBased(sdktrace.AlwaysSample()), false},
		{"unlimited", none, sdktrace.AlwaysSample(), false},
		{"zero", zero, sdktrace.AlwaysSample(), true},
		{"never", sdktrace.NewSpanLimits(), sdktrace.NeverSample(), false},
		{"ratio", sdktrace.NewSpanLimits(), sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.5)), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sdk, ours := both(t, c, script)
			sameSpans(t, sdk, ours, c.sdkHidesDrops)
			if c.sdkHidesDrops && len(ours.ended) > 0 && ours.ended[0].DroppedEvents() == 0 {
				t.Errorf("zero event limit: no dropped event counted")
			}
		})
	}
}

// TestProviderBinderStream runs channel events through the binder's span
// factories (nested sync calls, an error with an exception event, an end
// reason, an async call settled later) with both providers.
func TestProviderBinderStream(t *testing.T) {
	sdk, ours := both(t, limitsCase{sampler: sdktrace.ParentBased(sdktrace.AlwaysSample()), limits: sdktrace.NewSpanLimits()},
		func(_ trace.Tracer, factory func(trace.SpanKind) GetSpan) {
			b := New(OTelContext{})
			outer, inner := channel.New("outer"), channel.New("inner")
			end := func(_ trace.Span, p *channel.Payload) {}
			b.Bind(outer, factory(trace.SpanKindServer), Options{BeforeSpanEnd: setEndAttributes})
			h := b.Bind(inner, factory(trace.SpanKindClient), Options{CaptureError: CaptureAll, BeforeSpanEnd: end})
			x := channel.NewExec()
			at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
			po := &channel.Payload{Name: "outer", Time: at(0)}
			po.SetAttributes([]attribute.KeyValue{attribute.String("a", "1"), attribute.Int("n", 2)})
			outer.Start(x, po)
			pi := &channel.Payload{Name: "inner", Time: at(1)}
			inner.Start(x, pi)
			pi.Time = at(2)
			pi.SetError(&channel.Error{Type: "*net.OpError", Message: "refused"})
			inner.Error(pi)
			inner.End(x, pi)
			pa := &channel.Payload{Name: "inner", Time: at(3)}
			inner.Start(x, pa)
			inner.End(x, pa) // pending: neither result nor error
			po.Time = at(4)
			po.SetEndAttributes([]attribute.KeyValue{attribute.String("a", "3"), attribute.Bool("b", true)})
			po.SetResult(nil)
			outer.End(x, po)
			h.Unbind() // ends the pending call, marked
		})
	// The unbind time is the wall clock: compare the rest.
	for _, r := range []*recorder{sdk, ours} {
		for i, s := range r.ended {
			if s.Name() == "inner" && s.EndTime().After(t0.Add(time.Hour)) {
				r.ended[i] = endAt{s, t0}
			}
		}
	}
	sameSpans(t, sdk, ours, false)
	if len(ours.ended) != 3 {
		t.Fatalf("%d spans, want 3", len(ours.ended))
	}
}

type endAt struct {
	sdktrace.ReadOnlySpan
	t time.Time
}

func (e endAt) EndTime() time.Time { return e.t }

// TestSpanMethods calls every method of the span's interfaces: the
// embedded ReadWriteSpan is nil, so a method left undefined would panic.
func TestSpanMethods(t *testing.T) {
	rec := &recorder{}
	p := NewProvider(ProviderOptions{Processors: []sdktrace.SpanProcessor{rec}})
	_, s := p.Tracer("t").Start(context.Background(), "s")
	sp := s.(*span)
	v := reflect.ValueOf(sp)
	for _, typ := range []reflect.Type{reflect.TypeFor[sdktrace.ReadWriteSpan]()} {
		for i := range typ.NumMethod() {
			m := typ.Method(i)
			if !m.IsExported() {
				continue
			}
			fn := v.MethodByName(m.Name)
			args := make([]reflect.Value, fn.Type().NumIn())
			for j := range args {
				in := fn.Type().In(j)
				if fn.Type().IsVariadic() && j == len(args)-1 {
					args[j] = reflect.Zero(in.Elem())
					args = args[:j]
					break
				}
				args[j] = reflect.Zero(in)
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s panics: %v", m.Name, r)
					}
				}()
				fn.Call(args)
			}()
		}
	}
	if len(rec.ended) != 1 {
		t.Errorf("End: %d spans ended, want 1", len(rec.ended))
	}
}

// TestProviderShutdown: processors are shut down once, and spans started
// afterwards record nothing.
func TestProviderShutdown(t *testing.T) {
	rec := &recorder{}
	p := NewProvider(ProviderOptions{Processors: []sdktrace.SpanProcessor{rec}})
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, s := p.Tracer("t").Start(context.Background(), "late")
	s.End()
	if s.IsRecording() || rec.started != 0 || len(rec.ended) != 0 {
		t.Errorf("a span started after Shutdown was recorded")
	}
}

// TestProviderShutdownOpenSpan: a span still open at Shutdown is not
// exported when it ends, as with the SDK.
func TestProviderShutdownOpenSpan(t *testing.T) {
	rec := &recorder{}
	p := NewProvider(ProviderOptions{Processors: []sdktrace.SpanProcessor{rec}})
	_, s := p.Tracer("t").Start(context.Background(), "open")
	p.Shutdown(context.Background())
	s.End()
	if rec.started != 1 || len(rec.ended) != 0 {
		t.Errorf("started %d, ended %d; want 1, 0", rec.started, len(rec.ended))
	}
}

// TestTruncate checks the value length limit against the SDK's rules on
// the edge cases: characters, not bytes; invalid bytes dropped when cut.
func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		s     string
		limit int
		want  string
	}{
		{"hello", 10, "hello"}, {"hello", 3, "hel"}, {"héllo", 2, "hé"}, {"hé\xffllo", 3, "hél"},
		{"\xffabc", 0, ""}, {"ab\xffcd", 10, "ab\xffcd"}, {"abc\xff", 2, "ab"}, {"\ufffd\ufffdx", 2, "\ufffd\ufffd"},
	} {
		if got := truncate(c.limit, c.s); got != c.want {
			t.Errorf("truncate(%d, %q) = %q, want %q", c.limit, c.s, got, c.want)
		}
	}
}

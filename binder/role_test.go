package binder

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

// fakeShape names its span after the "name" capture (none: the call opts
// out), continues the trace in "parent" when set, and puts "done" on the
// span at its end.
type fakeShape struct{ invalid int }

func (fakeShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	for _, a := range p.Attributes {
		if a.Key == "name" {
			return a.Value.AsString(), trace.SpanKindServer, []attribute.KeyValue{attribute.String("shaped", "yes")}
		}
	}
	return "", 0, nil
}

func (fakeShape) End(span trace.Span, _ *channel.Payload) {
	span.SetAttributes(attribute.Bool("done", true))
}

func (s fakeShape) RemoteParent(p *channel.Payload) (trace.SpanContext, bool, int) {
	for _, a := range p.Attributes {
		if a.Key == "parent" {
			return remoteSC(a.Value.AsString()), true, s.invalid
		}
	}
	return trace.SpanContext{}, false, s.invalid
}

func remoteSC(hexTrace string) trace.SpanContext {
	tid, _ := trace.TraceIDFromHex(hexTrace)
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{7}, TraceFlags: trace.FlagsSampled, Remote: true})
}

// fakeSide knows one role of each kind, by name.
type fakeSide struct{ program trace.SpanContext }

func (fakeSide) Shaper(r probes.Role) (Shaper, bool) {
	return fakeShape{invalid: 1}, r.Name == "fake.server"
}

func (fakeSide) Enricher(r probes.Role) (func(trace.Span, *channel.Payload), bool) {
	return func(span trace.Span, _ *channel.Payload) { span.SetAttributes(attribute.String("enriched", "yes")) }, r.Name == "fake.status"
}

func (s fakeSide) Joiner(r probes.Role) (func(*channel.Payload) (trace.SpanContext, bool), bool) {
	return func(*channel.Payload) (trace.SpanContext, bool) { return s.program, true }, r.Name == "fake.start"
}

type roleEnv struct {
	t   *testing.T
	rec *tracetest.SpanRecorder
	f   *Factories
	b   *Binder
	x   *channel.Exec
	now time.Time
}

func newRoleEnv(t *testing.T, join bool, side SpanSide) *roleEnv {
	rec := tracetest.NewSpanRecorder()
	var export sdktrace.SpanProcessor = rec
	e := &roleEnv{t: t, rec: rec, x: channel.NewExec(), now: time.Unix(1_700_000_000, 0)}
	f := &Factories{Side: side}
	if join {
		f.Join = NewTraceJoin(rec)
		export = f.Join
	}
	f.Tracer = NewProvider(ProviderOptions{Processors: []sdktrace.SpanProcessor{export}}).NewTracer("t")
	e.f, e.b = f, New(OTelContext{})
	return e
}

// bind binds a channel for a probe of role r and kind (a spec's).
func (e *roleEnv) bind(name string, r probes.Role, kind string) *channel.TracingChannel {
	e.t.Helper()
	ch := channel.New(name)
	p := &probes.Probe{Spec: probes.Spec{Symbol: "main." + name, Name: name, Kind: kind}, Role: r}
	get, opts, err := e.f.For(ch, p)
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	e.b.Bind(ch, get, opts)
	return ch
}

// call publishes a start with attrs, then, from inside, calls in, then an
// end with end's attributes and a result.
func (e *roleEnv) call(ch *channel.TracingChannel, attrs, end []attribute.KeyValue, in func()) *channel.Payload {
	e.now = e.now.Add(time.Millisecond)
	p := &channel.Payload{Name: ch.Name(), Time: e.now}
	p.SetAttributes(attrs)
	ch.Start(e.x, p)
	if in != nil {
		in()
	}
	e.now = e.now.Add(time.Millisecond)
	p.Time = e.now
	p.SetEndAttributes(end)
	p.SetResult(nil)
	ch.End(e.x, p)
	return p
}

func (e *roleEnv) ended() map[string]sdktrace.ReadOnlySpan {
	m := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range e.rec.Ended() {
		m[s.Name()] = s
	}
	return m
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, a := range s.Attributes() {
		m[string(a.Key)] = a.Value.Emit()
	}
	return m
}

// TestRoleSpanAndEnrich: a spec's span has its kind and its captures at
// start and end; a span:false probe's captures, and a named enricher's
// attributes, go on the span active where it was called.
func TestRoleSpanAndEnrich(t *testing.T) {
	e := newRoleEnv(t, false, fakeSide{})
	outer := e.bind("outer", probes.Role{Kind: probes.RoleSpan}, "client")
	plain := e.bind("plain", probes.Role{Kind: probes.RoleEnrich}, "")
	named := e.bind("named", probes.Role{Kind: probes.RoleEnrich, Name: "fake.status"}, "")
	e.call(outer, []attribute.KeyValue{attribute.Int("arg", 1)}, []attribute.KeyValue{attribute.Int("ret", 2)}, func() {
		e.call(plain, []attribute.KeyValue{attribute.String("key", "k")}, []attribute.KeyValue{attribute.String("value", "v")}, nil)
		e.call(named, []attribute.KeyValue{attribute.String("raw", "x")}, nil, nil)
	})
	// An enrich probe with no span around it does nothing.
	e.call(plain, []attribute.KeyValue{attribute.String("lost", "l")}, nil, nil)
	spans := e.ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want only outer's: %v", len(spans), spans)
	}
	s := spans["outer"]
	if s == nil || s.SpanKind() != trace.SpanKindClient {
		t.Fatalf("outer: %v", s)
	}
	a := attrs(s)
	for k, v := range map[string]string{"arg": "1", "ret": "2", "key": "k", "value": "v", "enriched": "yes"} {
		if a[k] != v {
			t.Errorf("outer's %s = %q, want %q (all: %v)", k, a[k], v, a)
		}
	}
	if _, ok := a["raw"]; ok {
		t.Errorf("a named enricher's raw capture reached the span: %v", a)
	}
}

// TestRoleSemconv: a shaper names the span, or opts the call out; without
// an active span the call continues its remote parent (its malformed
// values counted), else the client span the kernel matched; a span whose
// parent is in another trace than the kernel made for it is counted.
func TestRoleSemconv(t *testing.T) {
	e := newRoleEnv(t, false, fakeSide{})
	srv := e.bind("srv", probes.Role{Kind: probes.RoleSemconv, Name: "fake.server"}, "")
	const remote = "0102030405060708090a0b0c0d0e0f10"
	e.call(srv, []attribute.KeyValue{attribute.String("name", "GET /a"), attribute.String("parent", remote)}, nil, nil)
	e.call(srv, nil, nil, nil) // opted out
	// The kernel matched a client span by connection; its trace is not
	// the payload's: one mismatch.
	caller := remoteSC("1112131415161718191a1b1c1d1e1f20")
	p := &channel.Payload{Name: "srv", Time: e.now, Caller: caller, TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}}
	p.SetAttributes([]attribute.KeyValue{attribute.String("name", "GET /b")})
	srv.Start(e.x, p)
	p.SetResult(nil)
	srv.End(e.x, p)

	spans := e.ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (the opted-out call has none): %v", len(spans), spans)
	}
	a := spans["GET /a"]
	if a == nil || a.SpanKind() != trace.SpanKindServer || a.Parent().TraceID().String() != remote || !a.Parent().IsRemote() {
		t.Fatalf("GET /a: %v", a)
	}
	if m := attrs(a); m["shaped"] != "yes" || m["done"] != "true" {
		t.Errorf("GET /a attributes %v: want the shaper's at start and end", m)
	}
	b := spans["GET /b"]
	if b == nil || b.Parent().SpanID() != caller.SpanID() {
		t.Fatalf("GET /b: parent %v, want the caller %v", b.Parent(), caller)
	}
	if n := e.f.InvalidContext.Load(); n != 2 {
		t.Errorf("%d invalid trace contexts counted, want the shaper's 1 per span", n)
	}
	if n := e.f.TraceMismatches.Load(); n != 1 {
		t.Errorf("%d trace mismatches, want 1", n)
	}
}

// TestRoleJoin: at a join probe's end, the trace of the span around it
// joins the program's; spans of that trace ending after are exported in it.
func TestRoleJoin(t *testing.T) {
	program := remoteSC("a1a2a3a4a5a6a7a8a9aaabacadaeaf00")
	e := newRoleEnv(t, true, fakeSide{program: program})
	outer := e.bind("outer", probes.Role{Kind: probes.RoleSpan}, "server")
	start := e.bind("start", probes.Role{Kind: probes.RoleJoin, Name: "fake.start"}, "")
	e.call(outer, nil, nil, func() { e.call(start, nil, nil, nil) })
	s := e.ended()["outer"]
	if s == nil || s.SpanContext().TraceID() != program.TraceID() {
		t.Fatalf("outer %v: want it in the program's trace %s", s, program.TraceID())
	}
	if e.f.Join.Joined() != 1 {
		t.Errorf("%d joins, want 1", e.f.Join.Joined())
	}
}

// TestRoleErrors: a role the span side does not know, a join without a
// trace join, and a role that publishes nothing are refused, by probe.
func TestRoleErrors(t *testing.T) {
	for _, c := range []struct {
		role probes.Role
		join bool
		side SpanSide
		want string
	}{
		{probes.Role{Kind: probes.RoleSemconv, Name: "nope"}, false, fakeSide{}, `no shaper for role "nope"`},
		{probes.Role{Kind: probes.RoleSemconv, Name: "fake.server"}, false, nil, "no shaper"},
		{probes.Role{Kind: probes.RoleEnrich, Name: "nope"}, false, fakeSide{}, "no enricher"},
		{probes.Role{Kind: probes.RoleJoin, Name: "nope"}, true, fakeSide{}, "no joiner"},
		{probes.Role{Kind: probes.RoleJoin, Name: "fake.start"}, false, fakeSide{}, "no trace join"},
		{probes.Role{Kind: probes.RoleNone}, false, fakeSide{}, "publishes nothing"},
	} {
		e := newRoleEnv(t, c.join, c.side)
		_, _, err := e.f.For(channel.New("x"), &probes.Probe{Spec: probes.Spec{Symbol: "main.x"}, Role: c.role})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "main.x: ") {
			t.Errorf("%+v: error %v, want one naming main.x and %q", c.role, err, c.want)
		}
	}
}

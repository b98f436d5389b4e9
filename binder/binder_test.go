package binder_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/binder"
	"github.com/tcagent/tcagent/channel"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// step is one event of a synthetic stream. Calls are named; a call's payload
// is created by its start. Goroutines ("exec") are named too.
type step struct {
	ev     string // start end error asyncStart asyncEnd | bind unbind | active
	call   string // the call, the handle (bind/unbind) or the expected active span ("" = none)
	at     int
	result bool   // SetResult before publishing
	err    string // SetError before publishing
	exec   string // goroutine; default "main"
	fork   string // start: the goroutine is forked from this one first
}

type wantSpan struct {
	name, parent string
	code         codes.Code
	msg          string
	end          int
	exceptions   []string // exception.type=message per event
	reason       string   // tcagent.end_reason
	hook         string   // attribute set by BeforeSpanEnd ("" when no hook)
}

type env struct {
	t       *testing.T
	rec     *tracetest.SpanRecorder
	b       *binder.Binder
	ch      *channel.TracingChannel
	get     binder.GetSpan
	opts    binder.Options
	handles map[string]*binder.Handle
	execs   map[string]*channel.Exec
	calls   map[string]*channel.Payload
}

func newEnv(t *testing.T, s binder.ContextStrategy, opts binder.Options) *env {
	rec := tracetest.NewSpanRecorder()
	tp := binder.NewProvider(binder.ProviderOptions{Processors: []sdktrace.SpanProcessor{rec}})
	factory := binder.SpanFactory(tp.NewTracer("test"), trace.SpanKindInternal)
	e := &env{
		t: t, rec: rec, b: binder.New(s), ch: channel.New("test"), opts: opts,
		handles: map[string]*binder.Handle{}, execs: map[string]*channel.Exec{"main": channel.NewExec()},
		calls: map[string]*channel.Payload{},
	}
	e.get = func(parent trace.Span, p *channel.Payload) trace.Span {
		if strings.HasPrefix(p.Name, "optout") {
			return nil
		}
		return factory(parent, p)
	}
	e.handles["h1"] = e.b.Bind(e.ch, e.get, opts)
	return e
}

func (e *env) run(steps []step) {
	e.t.Helper()
	for i, s := range steps {
		exec := s.exec
		if exec == "" {
			exec = "main"
		}
		if s.fork != "" {
			e.execs[exec] = e.execs[s.fork].Fork()
		}
		x := e.execs[exec]
		p := e.calls[s.call]
		if p != nil {
			p.Time = at(s.at)
			if s.result {
				p.SetResult(nil)
			}
			if s.err != "" {
				p.SetError(&channel.Error{Type: "*errors.errorString", Message: s.err})
			}
		}
		switch s.ev {
		case "start":
			p = &channel.Payload{Name: s.call, Time: at(s.at), StartTime: at(s.at)}
			e.calls[s.call] = p
			e.ch.Start(x, p)
		case "end":
			e.ch.End(x, p)
		case "error":
			e.ch.Error(p)
		case "asyncStart":
			e.ch.AsyncStart(p)
		case "asyncEnd":
			e.ch.AsyncEnd(p)
		case "bind":
			e.handles[s.call] = e.b.Bind(e.ch, e.get, e.opts)
		case "unbind":
			e.handles[s.call].Unbind()
		case "active":
			got := ""
			if sp := e.b.ActiveSpan(x); sp != nil {
				got = sp.(sdktrace.ReadOnlySpan).Name()
			}
			if got != s.call {
				e.t.Errorf("step %d: active span on %s = %q, want %q", i, exec, got, s.call)
			}
		default:
			e.t.Fatalf("step %d: unknown event %q", i, s.ev)
		}
	}
}

func (e *env) check(want []wantSpan, open int) {
	e.t.Helper()
	ended := e.rec.Ended()
	byID := map[trace.SpanID]string{}
	for _, s := range e.rec.Started() {
		byID[s.SpanContext().SpanID()] = s.Name()
	}
	if len(ended) != len(want) {
		names := []string{}
		for _, s := range ended {
			names = append(names, s.Name())
		}
		e.t.Fatalf("ended spans = %d %v, want %d", len(ended), names, len(want))
	}
	if got := len(e.rec.Started()) - len(ended); got != open {
		e.t.Errorf("open spans = %d, want %d", got, open)
	}
	for i, w := range want {
		s := ended[i]
		if s.Name() != w.name {
			e.t.Errorf("span %d: name %q, want %q", i, s.Name(), w.name)
			continue
		}
		parent := ""
		if s.Parent().IsValid() {
			parent = byID[s.Parent().SpanID()]
			if parent == "" {
				parent = "?unknown"
			}
		}
		if parent != w.parent {
			e.t.Errorf("%s: parent %q, want %q", w.name, parent, w.parent)
		}
		if s.Status().Code != w.code || s.Status().Description != w.msg {
			e.t.Errorf("%s: status %v %q, want %v %q", w.name, s.Status().Code, s.Status().Description, w.code, w.msg)
		}
		if w.end >= 0 && !s.EndTime().Equal(at(w.end)) {
			e.t.Errorf("%s: end %v, want %v", w.name, s.EndTime().Sub(t0), at(w.end).Sub(t0))
		}
		var ex []string
		for _, ev := range s.Events() {
			if ev.Name != "exception" {
				continue
			}
			m := map[attribute.Key]string{}
			for _, a := range ev.Attributes {
				m[a.Key] = a.Value.Emit()
			}
			ex = append(ex, m["exception.type"]+"="+m["exception.message"])
		}
		if fmt.Sprint(ex) != fmt.Sprint(w.exceptions) {
			e.t.Errorf("%s: exceptions %v, want %v", w.name, ex, w.exceptions)
		}
		attrs := map[attribute.Key]string{}
		for _, a := range s.Attributes() {
			attrs[a.Key] = a.Value.Emit()
		}
		if attrs[binder.EndReasonKey] != w.reason {
			e.t.Errorf("%s: end reason %q, want %q", w.name, attrs[binder.EndReasonKey], w.reason)
		}
		if attrs["hook"] != w.hook {
			e.t.Errorf("%s: hook attribute %q, want %q", w.name, attrs["hook"], w.hook)
		}
	}
}

var strategies = map[string]binder.ContextStrategy{"otel": binder.OTelContext{}, "scope": binder.Scoped{}}

func TestRules(t *testing.T) {
	capFunc := func(err error) (binder.Exception, bool) {
		if strings.Contains(err.Error(), "skip") {
			return binder.Exception{}, false
		}
		return binder.Exception{Type: "custom", Message: "captured " + err.Error()}, true
	}
	hookCount := 0
	hook := func(span trace.Span, p *channel.Payload) {
		hookCount++
		ro := span.(sdktrace.ReadOnlySpan)
		if !ro.EndTime().IsZero() {
			t.Errorf("BeforeSpanEnd on %s: span already ended", ro.Name())
		}
		span.SetAttributes(attribute.String("hook", fmt.Sprintf("%s result=%v error=%v", p.Name, p.HasResult(), p.HasError())))
	}
	cases := []struct {
		name  string
		opts  binder.Options
		steps []step
		want  []wantSpan
		open  int
	}{
		{
			name:  "sync return with a value",
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "end", call: "a", at: 5, result: true}},
			want:  []wantSpan{{name: "a", end: 5}},
		},
		{
			name: "sync return with nothing still has a result",
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "end", call: "a", at: 3, result: true},
				{ev: "active", call: ""}},
			want: []wantSpan{{name: "a", end: 3}},
		},
		{
			name:  "end with neither result nor error leaves the span open",
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "end", call: "a", at: 3}, {ev: "asyncStart", call: "a", at: 4}},
			open:  1,
		},
		{
			name: "sync error",
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "error", call: "a", at: 2, err: "boom"},
				{ev: "end", call: "a", at: 2}},
			want: []wantSpan{{name: "a", end: 2, code: codes.Error, msg: "boom"}},
		},
		{
			name: "async settle",
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "end", call: "a", at: 2},
				{ev: "asyncStart", call: "a", at: 7, result: true}, {ev: "asyncEnd", call: "a", at: 8}},
			want: []wantSpan{{name: "a", end: 8}},
		},
		{
			name: "async failure",
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "end", call: "a", at: 2},
				{ev: "error", call: "a", at: 6, err: "late"}, {ev: "asyncStart", call: "a", at: 6}, {ev: "asyncEnd", call: "a", at: 9}},
			want: []wantSpan{{name: "a", end: 9, code: codes.Error, msg: "late"}},
		},
		{
			name: "error present at end ends the span; a late asyncEnd changes nothing",
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "error", call: "a", at: 2, err: "early"},
				{ev: "end", call: "a", at: 3}, {ev: "asyncStart", call: "a", at: 10}, {ev: "asyncEnd", call: "a", at: 11}},
			want: []wantSpan{{name: "a", end: 3, code: codes.Error, msg: "early"}},
		},
		{
			name: "callback settled synchronously",
			opts: binder.Options{BeforeSpanEnd: hook},
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "asyncStart", call: "a", at: 2, result: true},
				{ev: "asyncEnd", call: "a", at: 3}, {ev: "end", call: "a", at: 4}},
			want: []wantSpan{{name: "a", end: 3, hook: "a result=true error=false"}},
		},
		{
			name: "captureError off records no exception",
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "error", call: "a", at: 2, err: "boom"},
				{ev: "end", call: "a", at: 2}},
			want: []wantSpan{{name: "a", end: 2, code: codes.Error, msg: "boom"}},
		},
		{
			name: "captureError on",
			opts: binder.Options{CaptureError: binder.CaptureAll},
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "error", call: "a", at: 2, err: "boom"},
				{ev: "end", call: "a", at: 2}},
			want: []wantSpan{{name: "a", end: 2, code: codes.Error, msg: "boom", exceptions: []string{"*errors.errorString=boom"}}},
		},
		{
			name: "captureError function decides per error",
			opts: binder.Options{CaptureError: capFunc},
			steps: []step{
				{ev: "start", call: "a", at: 1}, {ev: "error", call: "a", at: 2, err: "boom"}, {ev: "end", call: "a", at: 2},
				{ev: "start", call: "b", at: 3}, {ev: "error", call: "b", at: 4, err: "skip me"}, {ev: "end", call: "b", at: 4},
			},
			want: []wantSpan{
				{name: "a", end: 2, code: codes.Error, msg: "boom", exceptions: []string{"custom=captured boom"}},
				{name: "b", end: 4, code: codes.Error, msg: "skip me"},
			},
		},
		{
			name: "beforeSpanEnd sees the open span and the payload, once",
			opts: binder.Options{BeforeSpanEnd: hook},
			steps: []step{{ev: "start", call: "a", at: 1}, {ev: "error", call: "a", at: 2, err: "x"},
				{ev: "end", call: "a", at: 2}, {ev: "asyncEnd", call: "a", at: 3}},
			want: []wantSpan{{name: "a", end: 2, code: codes.Error, msg: "x", hook: "a result=false error=true"}},
		},
		{
			name: "nested calls parent correctly and restore the enclosing span",
			steps: []step{
				{ev: "start", call: "outer", at: 1}, {ev: "active", call: "outer"},
				{ev: "start", call: "inner", at: 2}, {ev: "active", call: "inner"},
				{ev: "start", call: "leaf", at: 3}, {ev: "end", call: "leaf", at: 4, result: true},
				{ev: "active", call: "inner"},
				{ev: "end", call: "inner", at: 5, result: true}, {ev: "active", call: "outer"},
				{ev: "start", call: "sibling", at: 6}, {ev: "end", call: "sibling", at: 7, result: true},
				{ev: "end", call: "outer", at: 8, result: true}, {ev: "active", call: ""},
			},
			want: []wantSpan{
				{name: "leaf", parent: "inner", end: 4}, {name: "inner", parent: "outer", end: 5},
				{name: "sibling", parent: "outer", end: 7}, {name: "outer", end: 8},
			},
		},
		{
			name: "opt-out inside an active span",
			steps: []step{
				{ev: "start", call: "outer", at: 1},
				{ev: "start", call: "optout", at: 2}, {ev: "active", call: "outer"},
				{ev: "start", call: "child", at: 3}, {ev: "end", call: "child", at: 4, result: true},
				{ev: "error", call: "optout", at: 5, err: "ignored"},
				{ev: "end", call: "optout", at: 5}, {ev: "asyncEnd", call: "optout", at: 5},
				{ev: "active", call: "outer"},
				{ev: "end", call: "outer", at: 6, result: true},
			},
			want: []wantSpan{{name: "child", parent: "outer", end: 4}, {name: "outer", end: 6}},
		},
		{
			name: "rebind: no duplicate handlers, the old handle's unbind leaves the new binding",
			steps: []step{
				{ev: "start", call: "old", at: 1},
				{ev: "bind", call: "h2"},
				{ev: "end", call: "old", at: 2, result: true}, // old binding gone: ended at rebind
				{ev: "unbind", call: "h1"},
				{ev: "start", call: "new", at: 3}, {ev: "end", call: "new", at: 4, result: true},
			},
			want: []wantSpan{{name: "old", end: -1, reason: binder.EndUnbind}, {name: "new", end: 4}},
		},
		{
			name: "unbind twice",
			steps: []step{
				{ev: "start", call: "a", at: 1}, {ev: "end", call: "a", at: 2, result: true},
				{ev: "unbind", call: "h1"}, {ev: "unbind", call: "h1"},
				{ev: "start", call: "b", at: 3}, {ev: "end", call: "b", at: 4, result: true},
			},
			want: []wantSpan{{name: "a", end: 2}},
		},
		{
			name: "unbind while a call is open ends and marks it",
			opts: binder.Options{BeforeSpanEnd: hook},
			steps: []step{
				{ev: "start", call: "a", at: 1}, {ev: "unbind", call: "h1"},
				{ev: "end", call: "a", at: 2, result: true},
			},
			want: []wantSpan{{name: "a", end: -1, reason: binder.EndUnbind, hook: "a result=false error=false"}},
		},
		{
			name: "overlapping and interleaved calls on two goroutines",
			steps: []step{
				{ev: "start", call: "g1a", at: 1},
				{ev: "start", call: "g2a", at: 2, exec: "g2", fork: "main"}, // forked before g1a? no: main has g1a active
				{ev: "start", call: "g1b", at: 3},
				{ev: "start", call: "g2b", at: 4, exec: "g2"},
				{ev: "end", call: "g1b", at: 5, result: true},
				{ev: "error", call: "g2b", at: 6, err: "e2", exec: "g2"},
				{ev: "end", call: "g2b", at: 6, exec: "g2"},
				{ev: "end", call: "g1a", at: 7, result: true},
				{ev: "active", call: "g2a", exec: "g2"},
				{ev: "end", call: "g2a", at: 8, result: true, exec: "g2"},
				{ev: "active", call: "g1a", exec: "g2"},
			},
			want: []wantSpan{
				{name: "g1b", parent: "g1a", end: 5},
				{name: "g2b", parent: "g2a", end: 6, code: codes.Error, msg: "e2"},
				{name: "g1a", end: 7},
				{name: "g2a", parent: "g1a", end: 8},
			},
		},
		{
			name: "a goroutine forked inside a call inherits its span",
			steps: []step{
				{ev: "start", call: "parent", at: 1},
				{ev: "start", call: "child", at: 2, exec: "g", fork: "main"},
				{ev: "end", call: "parent", at: 3, result: true},
				{ev: "start", call: "grandchild", at: 4, exec: "gg", fork: "g"},
				{ev: "end", call: "grandchild", at: 5, result: true, exec: "gg"},
				{ev: "end", call: "child", at: 6, result: true, exec: "g"},
			},
			want: []wantSpan{
				{name: "parent", end: 3}, {name: "grandchild", parent: "child", end: 5},
				{name: "child", parent: "parent", end: 6},
			},
		},
	}
	for sname, strategy := range strategies {
		for _, c := range cases {
			t.Run(sname+"/"+c.name, func(t *testing.T) {
				hookCount = 0
				e := newEnv(t, strategy, c.opts)
				e.run(c.steps)
				e.check(c.want, c.open)
				if c.opts.BeforeSpanEnd != nil && hookCount != len(c.want) {
					t.Errorf("BeforeSpanEnd ran %d times, want %d", hookCount, len(c.want))
				}
			})
		}
	}
}

func TestChannelWithoutBinding(t *testing.T) {
	ch := channel.New("lonely")
	if ch.HasSubscribers() {
		t.Fatal("new channel has subscribers")
	}
	x := channel.NewExec()
	p := &channel.Payload{Name: "a"}
	ch.Start(x, p)
	p.SetError(errors.New("x"))
	ch.Error(p)
	ch.End(x, p)
	ch.AsyncStart(p)
	ch.AsyncEnd(p)
	if p.Value(p) != nil {
		t.Fatal("payload gained state without subscribers")
	}

	rec := tracetest.NewSpanRecorder()
	tp := binder.NewProvider(binder.ProviderOptions{Processors: []sdktrace.SpanProcessor{rec}})
	b := binder.New(binder.Scoped{})
	h := b.Bind(ch, binder.SpanFactory(tp.NewTracer("t"), trace.SpanKindInternal), binder.Options{})
	if !ch.HasSubscribers() {
		t.Fatal("bound channel has no subscribers")
	}
	h.Unbind()
	if ch.HasSubscribers() {
		t.Fatal("unbound channel still has subscribers")
	}
	ch.Start(x, &channel.Payload{Name: "after"})
	if n := len(rec.Started()); n != 0 {
		t.Fatalf("spans started after unbind: %d", n)
	}
}

func TestOptOutAtTopLevelTracksNothing(t *testing.T) {
	for sname, s := range strategies {
		t.Run(sname, func(t *testing.T) {
			b := binder.New(s)
			ch := channel.New("c")
			h := b.Bind(ch, func(trace.Span, *channel.Payload) trace.Span { return nil }, binder.Options{})
			x := channel.NewExec()
			p := &channel.Payload{Name: "a"}
			ch.Start(x, p)
			if b.ActiveSpan(x) != nil {
				t.Fatal("opt-out bound a span")
			}
			if h.OpenSpans() != 0 {
				t.Fatal("opt-out call is tracked")
			}
			p.SetResult(nil)
			ch.End(x, p)
		})
	}
}

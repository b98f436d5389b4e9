package lifecycle_test

import (
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/binder"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/reader"
)

// world runs synthetic streams through the tracker and a real binder.
type world struct {
	t   *testing.T
	tr  *lifecycle.Tracker
	rec *tracetest.SpanRecorder
}

// probe ids of the world: 0..3 sync "a".."d", 4 goroutines-async "spawn",
// 5 completion-async "open" completed by 6 "close".
func newWorld(t *testing.T, limits lifecycle.Limits) *world {
	rec := tracetest.NewSpanRecorder()
	tp := binder.NewProvider(binder.ProviderOptions{Processors: []sdktrace.SpanProcessor{rec}})
	b := binder.New(binder.Scoped{})
	mk := func(name string, async lifecycle.Async) *lifecycle.Probe {
		ch := channel.New(name)
		b.Bind(ch, binder.SpanFactory(tp.NewTracer("t"), trace.SpanKindInternal), binder.Options{})
		return &lifecycle.Probe{Channel: ch, Name: name, Async: async}
	}
	probes := map[uint32]*lifecycle.Probe{
		0: mk("a", lifecycle.Sync), 1: mk("b", lifecycle.Sync), 2: mk("c", lifecycle.Sync), 3: mk("d", lifecycle.Sync),
		4: mk("spawn", lifecycle.Goroutines),
		5: {Channel: mk("open", lifecycle.Completion).Channel, Name: "open", Async: lifecycle.Completion, CompletionID: 6},
		6: {Name: "close"},
	}
	return &world{t: t, tr: lifecycle.New(probes, limits), rec: rec}
}

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

func (w *world) start(g uint64, depth uint64, probe uint32, at int) {
	w.tr.Handle(&reader.Event{Kind: reader.Start, Goroutine: g, Depth: depth, Probe: probe, Time: ms(at),
		Attributes: []attribute.KeyValue{attribute.Int("g", int(g))}})
}

func (w *world) end(g uint64, depth uint64, probe uint32, at int) {
	w.tr.Handle(&reader.Event{Kind: reader.End, Goroutine: g, Depth: depth, Probe: probe, Time: ms(at)})
}

func (w *world) send(e reader.Event, at int) {
	e.Time = ms(at)
	w.tr.Handle(&e)
}

func (w *world) spans() map[string][]sdktrace.ReadOnlySpan {
	m := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range w.rec.Ended() {
		m[s.Name()] = append(m[s.Name()], s)
	}
	return m
}

func isChild(c, p sdktrace.ReadOnlySpan) bool {
	return c.Parent().SpanID() == p.SpanContext().SpanID() && c.SpanContext().TraceID() == p.SpanContext().TraceID()
}

func reason(s sdktrace.ReadOnlySpan) string {
	for _, a := range s.Attributes() {
		if a.Key == binder.EndReasonKey {
			return a.Value.AsString()
		}
	}
	return ""
}

func TestLineage(t *testing.T) {
	w := newWorld(t, lifecycle.Limits{})
	w.start(1, 100, 0, 1)
	// depth 1: three goroutines started by the traced call
	for g := uint64(2); g <= 4; g++ {
		w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 1, Child: g}, 2)
	}
	// depth 3: 1 → 5 → 6 → 7
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 1, Child: 5}, 2)
	w.end(1, 100, 0, 3)
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 5, Child: 6}, 4)
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 6, Child: 7}, 5)
	for _, g := range []uint64{2, 3, 4, 7} {
		w.start(g, 50, 1, 6)
		w.end(g, 50, 1, 7)
	}
	// A goroutine created by an untraced one inherits nothing.
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 99, Child: 8}, 8)
	w.start(8, 50, 2, 9)
	w.end(8, 50, 2, 10)
	sp := w.spans()
	a := sp["a"][0]
	if len(sp["b"]) != 4 {
		t.Fatalf("got %d b spans", len(sp["b"]))
	}
	for _, b := range sp["b"] {
		if !isChild(b, a) {
			t.Errorf("b on goroutine %v is not a child of a", b.Attributes())
		}
	}
	if sp["c"][0].Parent().IsValid() {
		t.Error("span on a goroutine of an untraced creator has a parent")
	}
	for _, g := range []uint64{2, 3, 4, 5, 6, 7} {
		w.send(reader.Event{Kind: reader.GoExit, Goroutine: g}, 11)
	}
	if n := w.tr.Goroutines(); n != 0 {
		t.Errorf("%d goroutines tracked after all exited", n)
	}
}

func TestAsyncGoroutines(t *testing.T) {
	w := newWorld(t, lifecycle.Limits{})
	w.start(1, 100, 4, 1)
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 1, Child: 2}, 2)
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 1, Child: 3}, 2)
	w.end(1, 100, 4, 3)
	if len(w.rec.Ended()) != 0 {
		t.Fatal("spawn ended at return while its goroutines run")
	}
	// goroutine 2 starts goroutine 4 (transitively under spawn) and exits.
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 2, Child: 4}, 10)
	w.start(2, 50, 0, 11)
	w.end(2, 50, 0, 12)
	w.send(reader.Event{Kind: reader.GoExit, Goroutine: 2}, 20)
	w.send(reader.Event{Kind: reader.GoExit, Goroutine: 3}, 30)
	if len(w.spans()["spawn"]) != 0 {
		t.Fatal("spawn ended while a grandchild goroutine runs")
	}
	w.send(reader.Event{Kind: reader.GoExit, Goroutine: 4}, 53)
	sp := w.spans()
	s := sp["spawn"]
	if len(s) != 1 || !s[0].EndTime().Equal(ms(53)) {
		t.Fatalf("spawn %v, want ended at 53ms", s)
	}
	if !isChild(sp["a"][0], s[0]) {
		t.Error("work on a spawned goroutine is not a child of spawn")
	}
	if w.tr.Pending() != 0 || w.tr.Goroutines() != 0 {
		t.Errorf("state left: %d pending, %d goroutines", w.tr.Pending(), w.tr.Goroutines())
	}

	// No goroutines: settles at return.
	w.start(1, 100, 4, 60)
	w.end(1, 100, 4, 61)
	if s := w.spans()["spawn"]; len(s) != 2 || !s[1].EndTime().Equal(ms(61)) {
		t.Fatalf("spawn without goroutines: %v", s)
	}
	// A failed call ends at end, goroutines or not.
	w.start(1, 100, 4, 70)
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 1, Child: 9}, 71)
	w.send(reader.Event{Kind: reader.End, Goroutine: 1, Depth: 100, Probe: 4, Err: errors.New("no")}, 72)
	s = w.spans()["spawn"]
	if len(s) != 3 || !s[2].EndTime().Equal(ms(72)) || s[2].Status().Code != codes.Error {
		t.Fatalf("failed spawn: %v", s)
	}
	w.send(reader.Event{Kind: reader.GoExit, Goroutine: 9}, 80)
	if len(w.rec.Ended()) != 4 {
		t.Errorf("late goroutine exit changed spans: %d", len(w.rec.Ended()))
	}
}

func TestCompletionHandle(t *testing.T) {
	w := newWorld(t, lifecycle.Limits{MaxSpanAge: time.Second})
	// completed after 30ms on another goroutine
	w.start(1, 100, 5, 0)
	w.send(reader.Event{Kind: reader.End, Goroutine: 1, Depth: 100, Probe: 5, Handle: 0xA0}, 1)
	w.send(reader.Event{Kind: reader.Start, Goroutine: 2, Depth: 100, Probe: 6, Handle: 0xB0}, 10) // other handle
	w.end(2, 100, 6, 11)
	w.send(reader.Event{Kind: reader.Start, Goroutine: 2, Depth: 100, Probe: 6, Handle: 0xA0}, 29)
	w.end(2, 100, 6, 30)
	// completion fails
	w.start(1, 100, 5, 40)
	w.send(reader.Event{Kind: reader.End, Goroutine: 1, Depth: 100, Probe: 5, Handle: 0xC0}, 41)
	w.send(reader.Event{Kind: reader.Start, Goroutine: 1, Depth: 100, Probe: 6, Handle: 0xC0}, 50)
	w.send(reader.Event{Kind: reader.End, Goroutine: 1, Depth: 100, Probe: 6, Err: errors.New("close failed")}, 51)
	// fails immediately
	w.start(1, 100, 5, 60)
	w.send(reader.Event{Kind: reader.End, Goroutine: 1, Depth: 100, Probe: 5, Err: errors.New("open failed")}, 61)
	// never completed
	w.start(1, 100, 5, 70)
	w.send(reader.Event{Kind: reader.End, Goroutine: 1, Depth: 100, Probe: 5, Handle: 0xD0}, 71)
	w.tr.Expire(ms(500))
	if n := len(w.spans()["open"]); n != 3 {
		t.Fatalf("%d open spans ended before the maximum age, want 3", n)
	}
	w.tr.Expire(ms(1071))
	s := w.spans()["open"]
	if len(s) != 4 {
		t.Fatalf("got %d open spans", len(s))
	}
	want := []struct {
		end    int
		code   codes.Code
		msg    string
		reason string
	}{{30, codes.Unset, "", ""}, {51, codes.Error, "close failed", ""}, {61, codes.Error, "open failed", ""}, {1071, codes.Unset, "", lifecycle.EndMaxAge}}
	for i, w := range want {
		if !s[i].EndTime().Equal(ms(w.end)) || s[i].Status().Code != w.code || s[i].Status().Description != w.msg || reason(s[i]) != w.reason {
			t.Errorf("open %d: end %v status %v reason %q, want %+v", i, s[i].EndTime().Sub(t0), s[i].Status(), reason(s[i]), w)
		}
	}
	if w.tr.Pending() != 0 {
		t.Errorf("%d handles pending", w.tr.Pending())
	}
}

func TestWorkerPool(t *testing.T) {
	w := newWorld(t, lifecycle.Limits{})
	w.start(1, 100, 0, 0) // "a": the pool is started inside a
	for g := uint64(10); g < 18; g++ {
		w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 1, Child: g}, 1)
	}
	w.end(1, 100, 0, 2)
	at := 3
	for job := 0; job < 40; job++ {
		g := uint64(10 + job%8)
		w.start(g, 60, 1, at)
		w.start(g, 90, 2, at+1) // nested work of the job
		w.end(g, 90, 2, at+2)
		w.end(g, 60, 1, at+3)
		at += 4
	}
	sp := w.spans()
	// One span for the call that started the pool, one per job and one per
	// job's nested work: 40 jobs on 8 workers.
	if len(sp["a"]) != 1 || len(sp["b"]) != 40 || len(sp["c"]) != 40 {
		t.Fatalf("%d a, %d b, %d c spans; want 1, 40, 40", len(sp["a"]), len(sp["b"]), len(sp["c"]))
	}
	a := sp["a"][0]
	for _, job := range sp["b"] {
		if !isChild(job, a) {
			t.Fatal("a job is not a child of what its worker inherited")
		}
	}
	for i, c := range sp["c"] {
		if !isChild(c, sp["b"][i]) {
			t.Fatalf("job %d's nested work parents to another job", i)
		}
	}
}

func TestPanics(t *testing.T) {
	w := newWorld(t, lifecycle.Limits{})
	// a recovers; b and c are unwound; a deferred traced call runs during
	// the panic and returns normally.
	w.start(1, 100, 0, 0)
	w.start(1, 200, 1, 1)
	w.start(1, 300, 2, 2)
	w.send(reader.Event{Kind: reader.Panic, Goroutine: 1, Depth: 400, PanicMessage: "panic: boom"}, 3)
	w.start(1, 500, 3, 4) // deferred call, deeper than gopanic
	w.end(1, 500, 3, 5)
	w.end(1, 100, 0, 6) // a returns: recovered
	w.start(1, 100, 1, 7)
	w.end(1, 100, 1, 8)
	sp := w.spans()
	for _, name := range []string{"b", "c"} {
		s := sp[name][0]
		if s.Status().Code != codes.Error || s.Status().Description != "panic: boom" || !s.EndTime().Equal(ms(6)) {
			t.Errorf("%s: %v ended %v, want error 'panic: boom' at 6ms", name, s.Status(), s.EndTime().Sub(t0))
		}
	}
	for _, s := range []sdktrace.ReadOnlySpan{sp["a"][0], sp["d"][0], sp["b"][1]} {
		if s.Status().Code != codes.Unset {
			t.Errorf("%s: status %v, want unset", s.Name(), s.Status())
		}
	}
	// An unrecovered panic on a goroutine that then exits (a server that
	// recovers it in an untraced frame and closes the connection).
	w.start(2, 100, 0, 10)
	w.send(reader.Event{Kind: reader.Panic, Goroutine: 2, Depth: 200, PanicMessage: "panic: handler"}, 11)
	w.send(reader.Event{Kind: reader.GoExit, Goroutine: 2}, 12)
	if s := w.spans()["a"][1]; s.Status().Description != "panic: handler" {
		t.Errorf("handler span: %v", s.Status())
	}
	// runtime.Goexit: frames unwound without a panic.
	w.start(3, 100, 2, 20)
	w.send(reader.Event{Kind: reader.GoExit, Goroutine: 3}, 21)
	if s := w.spans()["c"][1]; s.Status().Code != codes.Unset || reason(s) != lifecycle.EndGoroutineExit {
		t.Errorf("Goexit span: %v %q", s.Status(), reason(s))
	}
	if got := w.tr.Stats().PanicUnwound; got != 3 {
		t.Errorf("PanicUnwound = %d, want 3", got)
	}
}

func TestLostEventsNeverMisparent(t *testing.T) {
	w := newWorld(t, lifecycle.Limits{})
	w.start(1, 100, 0, 0)
	// The return of a and the start of b were lost (the kernel's count for
	// goroutine 1 moved to 2); c starts deeper than a was.
	w.send(reader.Event{Kind: reader.Start, Goroutine: 1, Depth: 300, Probe: 2, Lost: 2}, 5)
	w.send(reader.Event{Kind: reader.End, Goroutine: 1, Depth: 300, Probe: 2, Lost: 2}, 6)
	sp := w.spans()
	if reason(sp["a"][0]) != lifecycle.EndEventsLost {
		t.Errorf("a: reason %q", reason(sp["a"][0]))
	}
	if sp["c"][0].Parent().IsValid() {
		t.Error("c was parented to a call whose events were lost")
	}
	if w.tr.Stats().LostGoroutines != 1 {
		t.Errorf("stats %+v", w.tr.Stats())
	}
	// Reordered: an end before its start is dropped and counted; a create
	// from an unknown goroutine is ignored.
	w.end(5, 100, 0, 10)
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 77, Child: 78}, 11)
	if w.tr.Stats().UnmatchedEnds != 1 || w.tr.Goroutines() != 0 {
		t.Errorf("stats %+v, %d goroutines", w.tr.Stats(), w.tr.Goroutines())
	}
}

func TestLimits(t *testing.T) {
	w := newWorld(t, lifecycle.Limits{MaxOpenCalls: 2, MaxGoroutines: 2})
	w.start(1, 100, 0, 0)
	w.start(1, 200, 1, 1)
	w.start(1, 300, 2, 2) // over the limit
	w.end(1, 300, 2, 3)
	w.end(1, 200, 1, 4)
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 1, Child: 2}, 5)
	w.send(reader.Event{Kind: reader.GoCreate, Goroutine: 1, Child: 3}, 5) // over the limit
	w.end(1, 100, 0, 6)
	st := w.tr.Stats()
	if st.OverflowCalls != 1 || st.UnmatchedEnds != 1 || st.OverflowGoroutines != 1 {
		t.Errorf("stats %+v", st)
	}
	if len(w.spans()["c"]) != 0 || len(w.spans()["b"]) != 1 {
		t.Errorf("spans %v", w.spans())
	}
}

// TestPayloadReuse: a sync call's payload is reused once it ended, and no
// span sees another call's values: each keeps its own attributes, parent
// and end reason, also when calls reuse payloads inside an open one.
func TestPayloadReuse(t *testing.T) {
	w := newWorld(t, lifecycle.Limits{})
	call := func(kind reader.Kind, depth uint64, probe uint32, k string, at int) {
		e := reader.Event{Kind: kind, Goroutine: 1, Depth: depth, Probe: probe}
		if k != "" {
			e.Attributes = []attribute.KeyValue{attribute.String("k", k)}
		}
		w.send(e, at)
	}
	call(reader.Start, 100, 0, "a", 1)
	for i, k := range []string{"b1", "b2", "b3"} {
		call(reader.Start, 110, 1, k, 2+2*i)
		call(reader.End, 110, 1, "", 3+2*i)
	}
	call(reader.Start, 110, 2, "c", 10)
	w.send(reader.Event{Kind: reader.End, Goroutine: 1, Depth: 110, Probe: 2, Err: &channel.Error{Type: "E", Message: "failed"}}, 11)
	call(reader.Start, 110, 3, "d", 12)
	call(reader.End, 100, 0, "", 13) // d's return was lost: it ends with a
	sp := w.spans()
	a := sp["a"][0]
	want := map[string][]string{"a": {"a"}, "b": {"b1", "b2", "b3"}, "c": {"c"}, "d": {"d"}}
	for name, ks := range want {
		if len(sp[name]) != len(ks) {
			t.Fatalf("%s: %d spans, want %d", name, len(sp[name]), len(ks))
		}
		for i, s := range sp[name] {
			got := ""
			for _, kv := range s.Attributes() {
				if kv.Key == "k" {
					got = kv.Value.AsString()
				}
			}
			if got != ks[i] {
				t.Errorf("%s span %d: k=%q, want %q", name, i, got, ks[i])
			}
			if name != "a" && !isChild(s, a) {
				t.Errorf("%s span %d is not a's child", name, i)
			}
		}
	}
	if c := sp["c"][0]; c.Status().Description != "failed" || reason(c) != "" {
		t.Errorf("c: status %v, end reason %q", c.Status(), reason(c))
	}
	if d := sp["d"][0]; reason(d) != lifecycle.EndLost || d.Status().Code != 0 {
		t.Errorf("d: status %v, end reason %q, want %q", d.Status(), reason(d), lifecycle.EndLost)
	}
	if reason(a) != "" || a.EndTime() != ms(13) {
		t.Errorf("a: end reason %q, end %v", reason(a), a.EndTime())
	}
}

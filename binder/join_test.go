package binder

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceJoin: a trace begun here moves, at export, into the program's
// trace once joined, parents kept; a trace that continues a caller's
// context, a trace already joined, and a trace whose root ended do not.
func TestTraceJoin(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	j := NewTraceJoin(rec)
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(j)).Tracer("test")
	program := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	other := trace.TraceID{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}

	ctx, root := tr.Start(context.Background(), "root")
	_, early := tr.Start(ctx, "early")
	early.End() // before the join: stays in tcagent's trace
	own := root.SpanContext().TraceID()
	if !j.join(own, program) {
		t.Fatal("an open trace begun here did not join")
	}
	if j.join(own, other) {
		t.Error("a trace joined twice")
	}
	_, child := tr.Start(ctx, "child")
	child.End()
	root.End()
	if j.join(own, other) {
		t.Error("a trace whose root ended joined")
	}

	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: other, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true})
	_, cont := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), remote), "continued")
	if j.join(other, program) {
		t.Error("a trace continuing a caller's context joined")
	}
	cont.End()

	ended := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		ended[s.Name()] = s
	}
	if got := ended["early"].SpanContext().TraceID(); got != own {
		t.Errorf("a span ended before the join moved to %s", got)
	}
	for _, name := range []string{"child", "root"} {
		if got := ended[name].SpanContext().TraceID(); got != program {
			t.Errorf("%s is in trace %s, want the program's %s", name, got, program)
		}
	}
	if p := ended["child"].Parent(); p.TraceID() != program || p.SpanID() != root.SpanContext().SpanID() {
		t.Errorf("child's parent %s/%s, want the root %s in the program's trace", p.TraceID(), p.SpanID(), root.SpanContext().SpanID())
	}
	if p := ended["continued"]; p.SpanContext().TraceID() != other || !p.Parent().Equal(remote) {
		t.Errorf("the continued trace moved: %s, parent %v", p.SpanContext().TraceID(), p.Parent())
	}
	if n := j.joined.Load(); n != 1 {
		t.Errorf("%d joins counted, want 1", n)
	}
}

package binder

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
)

// TestPayloadIDs: spans whose payload carries ids made in the kernel get
// exactly those (a root its trace id too; a child keeps its parent's
// trace); spans without get random ones.
func TestPayloadIDs(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(NewPayloadIDs()))
	tr := tp.Tracer("test")
	root := &channel.Payload{
		TraceID: trace.TraceID{0x4b, 0xf9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14},
		SpanID:  trace.SpanID{0, 0xf0, 0x67, 1, 2, 3, 4, 5},
	}
	ctx, rs := tr.Start(WithPayloadIDs(context.Background(), root), "root")
	child := &channel.Payload{SpanID: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9}}
	_, cs := tr.Start(WithPayloadIDs(ctx, child), "child")
	_, plain := tr.Start(WithPayloadIDs(context.Background(), &channel.Payload{}), "plain")
	_, plainChild := tr.Start(ctx, "plain child")
	for _, s := range []trace.Span{plainChild, plain, cs, rs} {
		s.End()
	}
	if sc := rs.SpanContext(); sc.TraceID() != root.TraceID || sc.SpanID() != root.SpanID {
		t.Errorf("root %s/%s, want the payload's %s/%s", sc.TraceID(), sc.SpanID(), root.TraceID, root.SpanID)
	}
	if sc := cs.SpanContext(); sc.TraceID() != root.TraceID || sc.SpanID() != child.SpanID {
		t.Errorf("child %s/%s, want %s/%s", sc.TraceID(), sc.SpanID(), root.TraceID, child.SpanID)
	}
	for _, s := range []trace.Span{plain, plainChild} {
		sc := s.SpanContext()
		if !sc.IsValid() || sc.SpanID() == root.SpanID || sc.SpanID() == child.SpanID {
			t.Errorf("a span without payload ids got %s/%s", sc.TraceID(), sc.SpanID())
		}
	}
	if plain.SpanContext().TraceID() == root.TraceID || plainChild.SpanContext().TraceID() != root.TraceID {
		t.Error("a span without payload ids is in the wrong trace")
	}
}

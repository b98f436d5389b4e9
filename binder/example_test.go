package binder_test

import (
	"errors"
	"fmt"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/binder"
	"github.com/tcagent/tcagent/channel"
)

// A publisher (in tcagent, the lifecycle tracker) publishes each call's
// start and end on its channel; the binder, subscribed, turns them into
// spans. The inner call starts while the outer one is active on the same
// execution context, so its span is the outer span's child; a call that
// ended with an error gets the error status.
func Example() {
	exp := tracetest.NewInMemoryExporter()
	tracer := binder.NewProvider(binder.ProviderOptions{Processors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(exp)}}).NewTracer("example")

	outerCh, innerCh := channel.New("handle"), channel.New("query")
	b := binder.New(binder.OTelContext{})
	b.Bind(outerCh, binder.SpanFactory(tracer, trace.SpanKindServer), binder.Options{})
	b.Bind(innerCh, binder.SpanFactory(tracer, trace.SpanKindClient), binder.Options{})

	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	x := channel.NewExec() // one goroutine
	outer := &channel.Payload{Name: "handle", Time: t0}
	outerCh.Start(x, outer)
	inner := &channel.Payload{Name: "query", Time: t0.Add(time.Millisecond)}
	innerCh.Start(x, inner)
	inner.Time = t0.Add(3 * time.Millisecond)
	inner.SetError(errors.New("no rows"))
	innerCh.Error(inner)
	innerCh.End(x, inner)
	outer.Time = t0.Add(5 * time.Millisecond)
	outer.SetResult(nil)
	outerCh.End(x, outer)

	spans := exp.GetSpans()
	byID := map[trace.SpanID]string{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s.Name
	}
	for _, s := range spans {
		parent := byID[s.Parent.SpanID()]
		if parent == "" {
			parent = "(root)"
		}
		fmt.Printf("%s %s parent=%s %s status=%s\n", s.Name, s.SpanKind, parent, s.EndTime.Sub(s.StartTime), s.Status.Code)
	}
	// Output:
	// query client parent=handle 2ms status=Error
	// handle server parent=(root) 5ms status=Unset
}

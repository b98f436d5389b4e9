package binder_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/binder"
	"github.com/tcagent/tcagent/channel"
)

// noopExporter makes the comparison about span handling, not export.
type noopExporter struct{}

func (noopExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (noopExporter) Shutdown(context.Context) error                             { return nil }

func benchTracer() *binder.Tracer {
	tp := binder.NewProvider(binder.ProviderOptions{Processors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(noopExporter{})}})
	return tp.NewTracer("bench")
}

// BenchmarkSyncCall compares, in one run, a sync call's start and end
// published through the channel and binder against the same SDK span made by
// hand; the difference is the binder's cost per call.
func BenchmarkSyncCall(b *testing.B) {
	now := time.Now()
	b.Run("by-hand", func(b *testing.B) {
		tr := benchTracer()
		b.ReportAllocs()
		for b.Loop() {
			_, s := tr.Start(context.Background(), "call", trace.WithTimestamp(now), trace.WithSpanKind(trace.SpanKindInternal))
			s.End(trace.WithTimestamp(now))
		}
	})
	for name, strategy := range strategies {
		b.Run("binder-"+name, func(b *testing.B) {
			bd := binder.New(strategy)
			ch := channel.New("call")
			bd.Bind(ch, binder.SpanFactory(benchTracer(), trace.SpanKindInternal), binder.Options{})
			x := channel.NewExec()
			b.ReportAllocs()
			for b.Loop() {
				p := channel.Payload{Name: "call", Time: now}
				ch.Start(x, &p)
				p.SetResult(nil)
				ch.End(x, &p)
			}
		})
	}
}

// BenchmarkBinderAlone measures the channel and binder with a span factory
// that returns a prebuilt span, so that SDK costs are out of the figure.
func BenchmarkBinderAlone(b *testing.B) {
	for name, strategy := range strategies {
		b.Run(name, func(b *testing.B) {
			span := trace.SpanFromContext(context.Background()) // no-op span: End is free
			bd := binder.New(strategy)
			ch := channel.New("call")
			bd.Bind(ch, func(trace.Span, *channel.Payload) trace.Span { return span }, binder.Options{})
			x := channel.NewExec()
			b.ReportAllocs()
			for b.Loop() {
				p := channel.Payload{Name: "call"}
				ch.Start(x, &p)
				p.SetResult(nil)
				ch.End(x, &p)
			}
		})
	}
}

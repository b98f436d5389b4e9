package binder

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
)

// SpanFactory returns a GetSpan that opens a span of the given kind named
// after the payload, starting at the payload's event time, with the payload's
// attributes, as a child of the active span.
func SpanFactory(tracer *Tracer, kind trace.SpanKind) GetSpan {
	return func(parent trace.Span, p *channel.Payload) trace.Span {
		ctx := WithPayloadIDs(context.Background(), p)
		if parent != nil {
			ctx = trace.ContextWithSpan(ctx, parent)
		}
		return tracer.StartSpan(ctx, p.Name, kind, p.Attributes, p.Time)
	}
}

package binder

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
)

// SpanFactory returns a GetSpan that opens a span of the given kind named
// after the payload, starting at the payload's event time, with the payload's
// attributes, as a child of the active span.
func SpanFactory(tracer trace.Tracer, kind trace.SpanKind) GetSpan {
	return func(parent trace.Span, p *channel.Payload) trace.Span {
		ctx := WithPayloadIDs(context.Background(), p)
		if parent != nil {
			ctx = trace.ContextWithSpan(ctx, parent)
		}
		opts := []trace.SpanStartOption{kindOption(kind), trace.WithAttributes(p.Attributes...)}
		if !p.Time.IsZero() {
			opts = append(opts, trace.WithTimestamp(p.Time))
		}
		_, span := tracer.Start(ctx, p.Name, opts...)
		return span
	}
}

// kindOptions are the span-kind options, made once: an option made per
// span is an allocation per span.
var kindOptions = [...]trace.SpanStartOption{
	trace.SpanKindUnspecified: trace.WithSpanKind(trace.SpanKindUnspecified),
	trace.SpanKindInternal:    trace.WithSpanKind(trace.SpanKindInternal),
	trace.SpanKindServer:      trace.WithSpanKind(trace.SpanKindServer),
	trace.SpanKindClient:      trace.WithSpanKind(trace.SpanKindClient),
	trace.SpanKindProducer:    trace.WithSpanKind(trace.SpanKindProducer),
	trace.SpanKindConsumer:    trace.WithSpanKind(trace.SpanKindConsumer),
}

func kindOption(k trace.SpanKind) trace.SpanStartOption {
	if int(k) < len(kindOptions) {
		return kindOptions[k]
	}
	return trace.WithSpanKind(k)
}

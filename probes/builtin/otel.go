package builtin

import (
	"errors"

	"github.com/tcagent/tcagent/probes"
)

// The role and capture keys of the otel set: its span side
// (binder/semconv/otel.go) reads the program's span under these keys.
const (
	RoleOTelStart = "otel.start"

	OTelSpanType     = "span_type" // the returned span's type word
	OTelTraceHi      = "trace_hi"  // the trace id's first 8 bytes, as a little-endian word
	OTelTraceLo      = "trace_lo"
	OTelSpanID       = "span_id"
	OTelFlags        = "flags"
	OTelParentSpanID = "parent_span_id"
)

const (
	otelSDK   = "go.opentelemetry.io/otel/sdk/trace"
	otelTrace = "go.opentelemetry.io/otel/trace"
	// (*tracer).Start(ctx, name string, opts ...SpanStartOption)
	// (context.Context, trace.Span): the span's itab and data word come
	// back in RCX and RDI.
	otelSpanItab, otelSpanData = 2, 3
)

// otelProbes traces the program's own OpenTelemetry SDK, when it links one:
// the span each (*tracer).Start makes. It opens no span of tcagent's: at the
// call's return, the trace of the tcagent span open around it joins the
// trace of the program's span (RoleJoin: binder.TraceJoin), so that one request is one
// trace whoever made its spans.
func otelProbes(b *probes.Binary, o *offsets, opts Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	p, ok, err := probes.NewProbe(b, otelSDK+".(*tracer).Start", id, rt)
	if err != nil || !ok {
		return nil, err
	}
	var f struct{ sc, parent, traceID, spanID, flags uint16 }
	if err := o.mustAll(
		fieldOffset{&f.sc, otelSDK + ".recordingSpan.spanContext"}, fieldOffset{&f.parent, otelSDK + ".recordingSpan.parent"},
		fieldOffset{&f.traceID, otelTrace + ".SpanContext.traceID"}, fieldOffset{&f.spanID, otelTrace + ".SpanContext.spanID"},
		fieldOffset{&f.flags, otelTrace + ".SpanContext.traceFlags"},
	); err != nil {
		return nil, err
	}
	capture(p, true, OTelSpanType, field(otelSpanItab, 8, 8)) // itab._type
	capture(p, true, OTelTraceHi, field(otelSpanData, 8, f.sc+f.traceID))
	capture(p, true, OTelTraceLo, field(otelSpanData, 8, f.sc+f.traceID+8))
	capture(p, true, OTelSpanID, field(otelSpanData, 8, f.sc+f.spanID))
	capture(p, true, OTelFlags, field(otelSpanData, 1, f.sc+f.flags))
	capture(p, true, OTelParentSpanID, field(otelSpanData, 8, f.parent+f.spanID))
	// With --propagate the kernel adopts the program's trace as well, so
	// that requests sent under the program's span carry its trace.
	if opts.Propagate {
		typ, ok := b.TypeAddr("*trace.recordingSpan")
		if !ok {
			return nil, errors.New("--propagate: no *trace.recordingSpan type in the binary")
		}
		p.Recipe.Adopt, p.Recipe.WantType = true, typ
	}
	p.Spec.Name = RoleOTelStart
	p.Role = probes.Role{Kind: probes.RoleJoin, Name: RoleOTelStart}
	return []*probes.Probe{p}, nil
}

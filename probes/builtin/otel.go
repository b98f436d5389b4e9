package builtin

import (
	"encoding/binary"
	"errors"

	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
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
// trace of the program's span (see Probe.Joins), so that one request is one
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
	capture(p, true, "span_type", field(otelSpanItab, 8, 8)) // itab._type
	capture(p, true, "trace_hi", field(otelSpanData, 8, f.sc+f.traceID))
	capture(p, true, "trace_lo", field(otelSpanData, 8, f.sc+f.traceID+8))
	capture(p, true, "span_id", field(otelSpanData, 8, f.sc+f.spanID))
	capture(p, true, "flags", field(otelSpanData, 1, f.sc+f.flags))
	capture(p, true, "parent_span_id", field(otelSpanData, 8, f.parent+f.spanID))
	// With --propagate the kernel adopts the program's trace as well, so
	// that requests sent under the program's span carry its trace.
	if opts.Propagate {
		typ, ok := b.TypeAddr("*trace.recordingSpan")
		if !ok {
			return nil, errors.New("--propagate: no *trace.recordingSpan type in the binary")
		}
		p.Recipe.Adopt, p.Recipe.WantType = true, typ+b.LoadBias
	}
	span := false
	p.Spec.Name, p.Spec.Span = "otel.start", &span
	p.Joins = (&otelSpan{typeName: b.TypeName}).context
	return []*probes.Probe{p}, nil
}

type otelSpan struct{ typeName func(uint64) string }

// context reads the span the program's SDK started: only a recording one
// (*trace.recordingSpan) is exported, and so worth joining.
func (s *otelSpan) context(p *channel.Payload) (trace.SpanContext, bool) {
	r := raw(p.EndAttributes)
	typ, _ := r.int("span_type")
	if s.typeName(uint64(typ)) != "*trace.recordingSpan" {
		return trace.SpanContext{}, false
	}
	hi, _ := r.int("trace_hi")
	lo, _ := r.int("trace_lo")
	sid, _ := r.int("span_id")
	flags, _ := r.int("flags")
	var cfg trace.SpanContextConfig
	// The ids are byte arrays: read as little-endian words, written back
	// as they were.
	binary.LittleEndian.PutUint64(cfg.TraceID[:8], uint64(hi))
	binary.LittleEndian.PutUint64(cfg.TraceID[8:], uint64(lo))
	binary.LittleEndian.PutUint64(cfg.SpanID[:], uint64(sid))
	cfg.TraceFlags = trace.TraceFlags(flags)
	sc := trace.NewSpanContext(cfg)
	return sc, sc.IsValid()
}

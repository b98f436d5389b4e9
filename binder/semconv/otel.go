package semconv

import (
	"encoding/binary"

	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes/builtin"
)

// otelSpan reads the span the program's own SDK started (the otel set's
// RoleJoin probe).
type otelSpan struct{ typeName func(uint64) string }

// context reads the span the program's SDK started: only a recording one
// (*trace.recordingSpan) is exported, and so worth joining.
func (s *otelSpan) context(p *channel.Payload) (trace.SpanContext, bool) {
	r := raw(p.EndAttributes)
	typ, _ := r.int(builtin.OTelSpanType)
	if s.typeName(uint64(typ)) != "*trace.recordingSpan" {
		return trace.SpanContext{}, false
	}
	hi, _ := r.int(builtin.OTelTraceHi)
	lo, _ := r.int(builtin.OTelTraceLo)
	sid, _ := r.int(builtin.OTelSpanID)
	flags, _ := r.int(builtin.OTelFlags)
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

// Package exporter sends finished spans out of the agent: JSON lines, a
// terminal tree per finished trace, or OTLP.
package exporter

import (
	"context"
	"encoding/json"
	"io"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// JSONL writes one JSON object per ended span per line, in the format of
// the user-facing contract (design.md section 3).
type JSONL struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewJSONL returns an exporter writing to w.
func NewJSONL(w io.Writer) *JSONL {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &JSONL{enc: enc}
}

// Span is one line of JSONL output.
type Span struct {
	Name         string         `json:"name"`
	TraceID      string         `json:"trace_id"`
	SpanID       string         `json:"span_id"`
	ParentSpanID string         `json:"parent_span_id"`
	Kind         string         `json:"kind"`
	Start        int64          `json:"start_time_unix_nano"`
	End          int64          `json:"end_time_unix_nano"`
	Status       Status         `json:"status"`
	Attributes   map[string]any `json:"attributes"`
	Events       []Event        `json:"events"`
	Resource     map[string]any `json:"resource"`
}

// Status is a span's status in JSONL.
type Status struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Event is a span event in JSONL.
type Event struct {
	Name       string         `json:"name"`
	Time       int64          `json:"time_unix_nano"`
	Attributes map[string]any `json:"attributes"`
}

// FromSDK converts an SDK span to its JSONL form.
func FromSDK(s sdktrace.ReadOnlySpan) Span {
	out := Span{
		Name:       s.Name(),
		TraceID:    s.SpanContext().TraceID().String(),
		SpanID:     s.SpanContext().SpanID().String(),
		Kind:       kindName(s.SpanKind()),
		Start:      s.StartTime().UnixNano(),
		End:        s.EndTime().UnixNano(),
		Status:     Status{Code: codeName(s.Status().Code), Message: s.Status().Description},
		Attributes: attrMap(s.Attributes()),
		Events:     []Event{},
		Resource:   map[string]any{},
	}
	if s.Parent().IsValid() {
		out.ParentSpanID = s.Parent().SpanID().String()
	}
	for _, e := range s.Events() {
		out.Events = append(out.Events, Event{Name: e.Name, Time: e.Time.UnixNano(), Attributes: attrMap(e.Attributes)})
	}
	if r := s.Resource(); r != nil {
		out.Resource = attrMap(r.Attributes())
	}
	return out
}

// ExportSpans implements sdktrace.SpanExporter.
func (j *JSONL) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range spans {
		if err := j.enc.Encode(FromSDK(s)); err != nil {
			return err
		}
	}
	return nil
}

// Shutdown implements sdktrace.SpanExporter.
func (j *JSONL) Shutdown(context.Context) error { return nil }

func kindName(k trace.SpanKind) string {
	switch k {
	case trace.SpanKindServer:
		return "server"
	case trace.SpanKindClient:
		return "client"
	case trace.SpanKindProducer:
		return "producer"
	case trace.SpanKindConsumer:
		return "consumer"
	}
	return "internal"
}

func codeName(c codes.Code) string {
	switch c {
	case codes.Ok:
		return "ok"
	case codes.Error:
		return "error"
	}
	return "unset"
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

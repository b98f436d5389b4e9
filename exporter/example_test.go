package exporter_test

import (
	"context"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/exporter"
)

// The JSON-lines exporter writes one line per span, in the shape users
// script against (README: the JSON-lines contract).
func ExampleJSONL() {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	span := tracetest.SpanStub{
		Name:        "GET /users/{id}",
		SpanContext: sc,
		SpanKind:    trace.SpanKindServer,
		StartTime:   t0,
		EndTime:     t0.Add(1500 * time.Microsecond),
		Attributes:  []attribute.KeyValue{attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 404)},
		Status:      sdktrace.Status{Code: codes.Unset},
	}.Snapshot()
	exp := exporter.NewJSONL(os.Stdout)
	_ = exp.ExportSpans(context.Background(), []sdktrace.ReadOnlySpan{span})
	// Output:
	// {"name":"GET /users/{id}","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","parent_span_id":"","kind":"server","start_time_unix_nano":1767323045000000000,"end_time_unix_nano":1767323045001500000,"status":{"code":"unset","message":""},"attributes":{"http.request.method":"GET","http.response.status_code":404},"events":[],"resource":{}}
}

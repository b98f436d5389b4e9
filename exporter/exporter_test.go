package exporter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/exporter"
)

var t0 = time.Unix(1_700_000_000, 0)

// makeTrace creates parent > child (error, with an exception) on a provider
// with the given processor.
func makeTrace(p sdktrace.SpanProcessor) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p),
		sdktrace.WithResource(resource.NewWithAttributes("", attribute.String("service.name", "svc"), attribute.Int("process.pid", 42))))
	tr := tp.Tracer("t")
	ctx, parent := tr.Start(context.Background(), "parent", trace.WithTimestamp(t0), trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.Start(ctx, "child", trace.WithTimestamp(t0.Add(time.Millisecond)), trace.WithAttributes(attribute.String("k", "v"), attribute.Int("n", 3)))
	child.SetStatus(codes.Error, "boom")
	child.AddEvent("exception", trace.WithTimestamp(t0.Add(2*time.Millisecond)),
		trace.WithAttributes(attribute.String("exception.type", "*errors.errorString"), attribute.String("exception.message", "boom")))
	child.End(trace.WithTimestamp(t0.Add(3 * time.Millisecond)))
	parent.End(trace.WithTimestamp(t0.Add(5 * time.Millisecond)))
}

func TestJSONL(t *testing.T) {
	var buf bytes.Buffer
	makeTrace(sdktrace.NewSimpleSpanProcessor(exporter.NewJSONL(&buf)))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines", len(lines))
	}
	// Field order is part of the contract.
	wantOrder := []string{`{"name":"child","trace_id":"`, `","span_id":"`, `","parent_span_id":"`, `","kind":"internal","start_time_unix_nano":1700000000001000000,"end_time_unix_nano":1700000000003000000,"status":{"code":"error","message":"boom"},"attributes":{"k":"v","n":3},"events":[{"name":"exception","time_unix_nano":1700000000002000000,"attributes":{"exception.message":"boom","exception.type":"*errors.errorString"}}],"resource":{"process.pid":42,"service.name":"svc"}}`}
	rest := lines[0]
	for _, w := range wantOrder {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("line %s\nlacks, in order, %s", lines[0], w)
		}
		rest = rest[i+len(w):]
	}
	var child, parent exporter.Span
	json.Unmarshal([]byte(lines[0]), &child)
	json.Unmarshal([]byte(lines[1]), &parent)
	if parent.ParentSpanID != "" || child.ParentSpanID != parent.SpanID || len(parent.TraceID) != 32 || len(parent.SpanID) != 16 {
		t.Errorf("ids wrong: parent %+v child %+v", parent, child)
	}
	if parent.Kind != "server" || parent.Status.Code != "unset" || len(parent.Events) != 0 || parent.Events == nil {
		t.Errorf("parent %+v", parent)
	}
}

func TestTree(t *testing.T) {
	var buf bytes.Buffer
	tree := exporter.NewTree(&buf)
	makeTrace(tree)
	got := buf.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "trace ") {
		t.Fatalf("tree:\n%s", got)
	}
	if lines[1] != "└─ parent 5ms [server]" {
		t.Errorf("root line %q", lines[1])
	}
	if want := `   └─ child 2ms ERROR "boom" k="v" n=3`; !strings.HasPrefix(lines[2], want) {
		t.Errorf("child line %q, want prefix %q", lines[2], want)
	}
}

func TestTreeWaitsForOpenSpans(t *testing.T) {
	var buf bytes.Buffer
	tree := exporter.NewTree(&buf)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tree))
	ctx, parent := tp.Tracer("t").Start(context.Background(), "parent")
	_, late := tp.Tracer("t").Start(ctx, "late")
	parent.End()
	if buf.Len() != 0 {
		t.Fatalf("drew a trace with a span still open:\n%s", buf.String())
	}
	late.End()
	if !strings.Contains(buf.String(), "late") {
		t.Fatalf("trace not drawn after its last span ended:\n%s", buf.String())
	}
}

// reference is the encoding/json rendering of a span, which the hand-written
// encoder must match byte for byte. The kind and status code are given as the
// literals the contract names (TestJSONLKindsAndStatuses pins each of them).
func reference(s sdktrace.ReadOnlySpan, kind, code string) exporter.Span {
	out := exporter.Span{
		Name:       s.Name(),
		TraceID:    s.SpanContext().TraceID().String(),
		SpanID:     s.SpanContext().SpanID().String(),
		Kind:       kind,
		Start:      s.StartTime().UnixNano(),
		End:        s.EndTime().UnixNano(),
		Status:     exporter.Status{Code: code, Message: s.Status().Description},
		Attributes: attrMap(s.Attributes()),
		Events:     []exporter.Event{},
		Resource:   map[string]any{},
	}
	if s.Parent().IsValid() {
		out.ParentSpanID = s.Parent().SpanID().String()
	}
	for _, e := range s.Events() {
		out.Events = append(out.Events, exporter.Event{Name: e.Name, Time: e.Time.UnixNano(), Attributes: attrMap(e.Attributes)})
	}
	if r := s.Resource(); r != nil {
		out.Resource = attrMap(r.Attributes())
	}
	return out
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// TestJSONLMatchesEncodingJSON renders awkward spans both ways.
func TestJSONLMatchesEncodingJSON(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
		sdktrace.WithResource(resource.NewWithAttributes("", attribute.String("service.name", "s\"vc"), attribute.Int("process.pid", 7))))
	tr := tp.Tracer("t")
	weird := "quote\" back\\ nl\n tab\t ctl\x01 bad\xff utf8é sep\u2028\u2029 <html>&"
	ctx, parent := tr.Start(context.Background(), weird, trace.WithTimestamp(t0), trace.WithSpanKind(trace.SpanKindProducer))
	_, child := tr.Start(ctx, "child", trace.WithTimestamp(t0), trace.WithAttributes(
		attribute.String("z", weird), attribute.Bool("b", true), attribute.Float64("f", 1.5), attribute.Float64("big", 1e21),
		attribute.Int64("i", -3), attribute.StringSlice("ss", []string{"a", weird}), attribute.Int64Slice("is", []int64{1, 2}),
		attribute.BoolSlice("bs", []bool{true}), attribute.Float64Slice("fs", []float64{0.25}), attribute.String("a", "first"),
	))
	child.SetStatus(codes.Error, weird)
	child.AddEvent("exception", trace.WithTimestamp(t0), trace.WithAttributes(attribute.String("exception.type", "*x"), attribute.String("exception.message", weird)))
	child.End(trace.WithTimestamp(t0.Add(time.Second)))
	parent.End(trace.WithTimestamp(t0.Add(2 * time.Second)))
	var got bytes.Buffer
	if err := exporter.NewJSONL(&got).ExportSpans(context.Background(), rec.Ended()); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	ended := rec.Ended()
	if len(ended) != 2 || ended[0].Name() != "child" {
		t.Fatalf("recorded %d spans", len(ended))
	}
	enc.Encode(reference(ended[0], "internal", "error"))
	enc.Encode(reference(ended[1], "producer", "unset"))
	if got.String() != want.String() {
		t.Errorf("hand-written encoder differs from encoding/json:\n got  %s\n want %s", got.String(), want.String())
	}
}

// seqIDs gives spans fixed, sequential ids, so that whole lines can be pinned.
type seqIDs struct{ n byte }

func (g *seqIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.n++
	return trace.TraceID{0: 0xab, 15: g.n}, trace.SpanID{0: 0xcd, 7: g.n}
}

func (g *seqIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.n++
	return trace.SpanID{0: 0xcd, 7: g.n}
}

// TestJSONLKindsAndStatuses pins the whole line for every span kind and
// every status code the contract names, as literals: a wrong name for any
// one of them fails here.
func TestJSONLKindsAndStatuses(t *testing.T) {
	cases := []struct {
		kind trace.SpanKind
		code codes.Code
		msg  string
		want string
	}{
		{trace.SpanKindInternal, codes.Unset, "", `{"name":"s","trace_id":"ab000000000000000000000000000001","span_id":"cd00000000000001","parent_span_id":"","kind":"internal","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":1700000001000000000,"status":{"code":"unset","message":""},"attributes":{},"events":[],"resource":{"service.name":"svc"}}`},
		{trace.SpanKindServer, codes.Ok, "", `{"name":"s","trace_id":"ab000000000000000000000000000002","span_id":"cd00000000000002","parent_span_id":"","kind":"server","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":1700000001000000000,"status":{"code":"ok","message":""},"attributes":{},"events":[],"resource":{"service.name":"svc"}}`},
		{trace.SpanKindClient, codes.Error, "boom", `{"name":"s","trace_id":"ab000000000000000000000000000003","span_id":"cd00000000000003","parent_span_id":"","kind":"client","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":1700000001000000000,"status":{"code":"error","message":"boom"},"attributes":{},"events":[],"resource":{"service.name":"svc"}}`},
		{trace.SpanKindProducer, codes.Unset, "", `{"name":"s","trace_id":"ab000000000000000000000000000004","span_id":"cd00000000000004","parent_span_id":"","kind":"producer","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":1700000001000000000,"status":{"code":"unset","message":""},"attributes":{},"events":[],"resource":{"service.name":"svc"}}`},
		{trace.SpanKindConsumer, codes.Error, "late", `{"name":"s","trace_id":"ab000000000000000000000000000005","span_id":"cd00000000000005","parent_span_id":"","kind":"consumer","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":1700000001000000000,"status":{"code":"error","message":"late"},"attributes":{},"events":[],"resource":{"service.name":"svc"}}`},
		{trace.SpanKindInternal, codes.Ok, "", `{"name":"s","trace_id":"ab000000000000000000000000000006","span_id":"cd00000000000006","parent_span_id":"","kind":"internal","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":1700000001000000000,"status":{"code":"ok","message":""},"attributes":{},"events":[],"resource":{"service.name":"svc"}}`},
	}
	var buf bytes.Buffer
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(exporter.NewJSONL(&buf))),
		sdktrace.WithIDGenerator(&seqIDs{}), sdktrace.WithResource(resource.NewWithAttributes("", attribute.String("service.name", "svc"))))
	for _, c := range cases {
		buf.Reset()
		_, s := tp.Tracer("t").Start(context.Background(), "s", trace.WithTimestamp(t0), trace.WithSpanKind(c.kind))
		if c.code != codes.Unset {
			s.SetStatus(c.code, c.msg)
		}
		s.End(trace.WithTimestamp(t0.Add(time.Second)))
		if got := strings.TrimSuffix(buf.String(), "\n"); got != c.want {
			t.Errorf("kind %v, status %v:\n got  %s\n want %s", c.kind, c.code, got, c.want)
		}
	}
}

package prometheus_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	tcprom "github.com/tcagent/tcagent/exporter/prometheus"
)

func TestREDMetricsAndCardinalityCap(t *testing.T) {
	m := tcprom.New(3)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(m.SpanProcessor()),
		sdktrace.WithResource(resource.NewWithAttributes("", attribute.String("service.name", "svc"))))
	for i := 0; i < 5; i++ {
		for _, fail := range []bool{false, true} {
			_, s := tp.Tracer("t").Start(context.Background(), fmt.Sprintf("probe%d", i))
			if fail {
				s.SetStatus(codes.Error, "x")
			}
			s.End()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := m.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before any attach: %d, want 503", code)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`tcagent_probe_calls_total{probe="probe0",service="svc"} 2`,
		`tcagent_probe_errors_total{probe="probe2",service="svc"} 1`,
		`tcagent_probe_calls_total{probe="other",service="svc"} 4`,
		`tcagent_metric_series_overflow_total 4`,
		`tcagent_probe_duration_seconds_count{probe="probe1",service="svc"} 2`,
		`tcagent_spans_started_total 10`,
		`tcagent_ready 0`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `probe="probe3"`) {
		t.Error("a series past the cap was created")
	}
}

func TestSemconvMetrics(t *testing.T) {
	m := tcprom.New(0)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(m.SpanProcessor()),
		sdktrace.WithResource(resource.NewWithAttributes("", attribute.String("service.name", "svc"))))
	tr := tp.Tracer("t")
	_, s := tr.Start(context.Background(), "GET /users/{id}", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 200),
		attribute.String("http.route", "/users/{id}"), attribute.String("network.protocol.version", "1.1"),
		attribute.String("url.scheme", "http"), attribute.String("url.path", "/users/42")))
	s.End()
	_, c := tr.Start(context.Background(), "GET", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("http.request.method", "GET"), attribute.String("server.address", "example.com"), attribute.Int("server.port", 443)))
	c.SetStatus(codes.Error, "refused")
	c.SetAttributes(attribute.String("error.type", "*net.OpError"))
	c.End()
	rpc := func(kind trace.SpanKind, code int) trace.Span {
		_, s := tr.Start(context.Background(), "grpc.health.v1.Health/Check", trace.WithSpanKind(kind), trace.WithAttributes(
			attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", "grpc.health.v1.Health"),
			attribute.String("rpc.method", "Check"), attribute.Int("rpc.grpc.status_code", code), attribute.Int("server.port", 50051)))
		return s
	}
	rpc(trace.SpanKindServer, 0).End()
	rc := rpc(trace.SpanKindClient, 5)
	rc.SetStatus(codes.Error, "unknown service")
	rc.SetAttributes(attribute.String("error.type", "NOT_FOUND"))
	rc.End()
	msg := func(name string, kind trace.SpanKind, op string) trace.Span {
		_, s := tr.Start(context.Background(), name, trace.WithSpanKind(kind), trace.WithAttributes(
			attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.name", op),
			attribute.String("messaging.operation.type", op), attribute.String("messaging.destination.name", "orders"),
			attribute.Int64("messaging.kafka.offset", 7)))
		return s
	}
	msg("send orders", trace.SpanKindProducer, "send").End()
	rcv := msg("receive orders", trace.SpanKindConsumer, "receive")
	rcv.SetStatus(codes.Error, "kafka error 3: UNKNOWN_TOPIC_OR_PARTITION")
	rcv.SetAttributes(attribute.String("error.type", "kafka.Error"))
	rcv.End()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := m.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`http_server_request_duration_seconds_count{error_type="",http_request_method="GET",http_response_status_code="200",http_route="/users/{id}",network_protocol_version="1.1",service="svc",url_scheme="http"} 1`,
		`http_client_request_duration_seconds_count{error_type="*net.OpError",http_request_method="GET",http_response_status_code="",server_address="example.com",server_port="443",service="svc"} 1`,
		`rpc_server_duration_seconds_count{error_type="",rpc_grpc_status_code="0",rpc_method="Check",rpc_service="grpc.health.v1.Health",rpc_system="grpc",service="svc"} 1`,
		`rpc_client_duration_seconds_count{error_type="NOT_FOUND",rpc_grpc_status_code="5",rpc_method="Check",rpc_service="grpc.health.v1.Health",rpc_system="grpc",service="svc"} 1`,
		`messaging_client_operation_duration_seconds_count{error_type="",messaging_destination_name="orders",messaging_operation_name="send",messaging_operation_type="send",messaging_system="kafka",service="svc"} 1`,
		`messaging_client_operation_duration_seconds_count{error_type="kafka.Error",messaging_destination_name="orders",messaging_operation_name="receive",messaging_operation_type="receive",messaging_system="kafka",service="svc"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "/users/42") || strings.Contains(body, `offset="7"`) || strings.Contains(body, `tcagent_probe_calls_total{probe="GET`) {
		t.Error("a built-in span leaked high-cardinality labels into the metrics")
	}
}

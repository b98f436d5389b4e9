package semconv

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
)

func TestGRPCError(t *testing.T) {
	status := []attribute.KeyValue{attribute.Int64("code", 5), attribute.String("message", "unknown service")}
	cases := []struct {
		name string
		e    *channel.Error
		ret  []attribute.KeyValue
		want any // nil, *grpcStatus or *channel.Error
	}{
		{"a stream's end", &channel.Error{Type: "*errors.errorString", Message: "EOF"}, nil, nil},
		{"a status", &channel.Error{Type: "*status.Error", Message: "*status.Error"}, status, &grpcStatus{code: 5, msg: "unknown service"}},
		{"a status whose code was unreadable", &channel.Error{Type: "*status.Error"}, nil, &channel.Error{Type: "*status.Error"}},
		{"another error", &channel.Error{Type: "*net.OpError", Message: "refused"}, status, &channel.Error{Type: "*net.OpError", Message: "refused"}},
	}
	for _, c := range cases {
		got := grpcError(c.e, c.ret)
		switch w := c.want.(type) {
		case nil:
			if got != nil {
				t.Errorf("%s: %v, want none", c.name, got)
			}
		case *grpcStatus:
			if g, ok := got.(*grpcStatus); !ok || *g != *w {
				t.Errorf("%s: %#v, want %#v", c.name, got, w)
			}
		case *channel.Error:
			if g, ok := got.(*channel.Error); !ok || *g != *w {
				t.Errorf("%s: %#v, want %#v", c.name, got, w)
			}
		}
	}
}

func TestGRPCNames(t *testing.T) {
	name, attrs := rpcAttrs("/grpc.health.v1.Health/Check")
	if name != "grpc.health.v1.Health/Check" || attrs[1].Value.AsString() != "grpc.health.v1.Health" || attrs[2].Value.AsString() != "Check" {
		t.Errorf("%s %v", name, attrs)
	}
	for in, want := range map[string]string{
		"localhost:50051": "localhost:50051", "dns:///svc.ns:443": "svc.ns:443", "passthrough:///10.0.0.1:9": "10.0.0.1:9",
		"dns://8.8.8.8/svc:80": "svc:80", "unix:///run/x.sock": "run/x.sock",
	} {
		if got := grpcEndpoint(in); got != want {
			t.Errorf("grpcEndpoint(%q) = %q, want %q", in, got, want)
		}
	}
	if codeName(4) != "DEADLINE_EXCEEDED" || codeName(16) != "UNAUTHENTICATED" || codeName(99) != "99" {
		t.Error("code names")
	}
}

// TestGRPCStatusOnSpans: servers mark only their own failures as errors,
// clients every non-OK code; a unary call's inner stream opens no span.
func TestGRPCStatusOnSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t")
	server := func(code int64) sdktrace.ReadOnlySpan {
		_, s := tr.Start(context.Background(), "s")
		p := &channel.Payload{Attributes: []attribute.KeyValue{attribute.Int64("code", code), attribute.String("message", "m")}}
		enrichGRPCServer(s, p)
		s.End()
		return s.(sdktrace.ReadOnlySpan)
	}
	for code, isErr := range map[int64]bool{0: false, 1: false, 5: false, 2: true, 4: true, 13: true, 14: true} {
		s := server(code)
		if (s.Status().Code == codes.Error) != isErr {
			t.Errorf("server code %d: status %v", code, s.Status())
		}
	}
	client := func(err error) map[attribute.Key]attribute.Value {
		_, s := tr.Start(context.Background(), "c")
		p := &channel.Payload{}
		if err != nil {
			p.SetError(err)
		}
		grpcClientShape{}.End(s, p)
		s.End()
		m := map[attribute.Key]attribute.Value{}
		for _, a := range s.(sdktrace.ReadOnlySpan).Attributes() {
			m[a.Key] = a.Value
		}
		return m
	}
	if a := client(nil); a["rpc.grpc.status_code"].AsInt64() != 0 {
		t.Errorf("OK call: %v", a)
	}
	if a := client(&grpcStatus{code: 5}); a["rpc.grpc.status_code"].AsInt64() != 5 || a["error.type"].AsString() != "NOT_FOUND" {
		t.Errorf("NotFound call: %v", a)
	}
	if a := client(&channel.Error{Type: "*net.OpError"}); a["rpc.grpc.status_code"].Type() != attribute.INVALID || a["error.type"].AsString() != "*net.OpError" {
		t.Errorf("a call whose code is unknown got one: %v", a)
	}
	unary := &channel.Payload{Attributes: []attribute.KeyValue{attribute.String("method", "/s.S/M"), attribute.Int64("server_streams", 0), attribute.Int64("client_streams", 0)}}
	if name, _, _ := (grpcClientShape{stream: true}).Start(unary); name != "" {
		t.Errorf("a unary call's stream opened span %q", name)
	}
	stream := &channel.Payload{Attributes: []attribute.KeyValue{attribute.String("method", "/s.S/M"), attribute.Int64("server_streams", 1), attribute.Int64("client_streams", 0)}}
	if name, kind, _ := (grpcClientShape{stream: true}).Start(stream); name != "s.S/M" || kind != trace.SpanKindClient {
		t.Errorf("a stream opened %q %v", name, kind)
	}
}

package semconv

import (
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes/builtin"
)

// grpcCodes are the status codes' names, by code.
var grpcCodes = []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
	"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func codeName(c int64) string {
	if c >= 0 && c < int64(len(grpcCodes)) {
		return grpcCodes[c]
	}
	return strconv.FormatInt(c, 10)
}

// grpcStatus is a non-OK status an RPC ended with; code is -1 when it could
// not be read.
type grpcStatus struct {
	code int64
	msg  string
}

func (s *grpcStatus) Error() string    { return s.msg }
func (s *grpcStatus) TypeName() string { return "*status.Error" }

// grpcError makes the status of a returned error: none for io.EOF, which
// ends a stream well; the code and message of a *status.Error (grpc returns
// nothing else to its callers).
func grpcError(e *channel.Error, ret []attribute.KeyValue) error {
	if e.Type == "*errors.errorString" && e.Message == "EOF" {
		return nil
	}
	r := raw(ret)
	code, ok := r.int(builtin.GRPCCode)
	if e.Type != "*status.Error" || !ok {
		return e
	}
	msg, _ := r.str(builtin.GRPCMessage)
	return &grpcStatus{code: code, msg: msg}
}

// splitMethod splits "/package.Service/Method".
func splitMethod(m string) (name, service, method string) {
	name = strings.TrimPrefix(m, "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name, name[:i], name[i+1:]
	}
	return name, "", name
}

func rpcAttrs(m string) (string, []attribute.KeyValue) {
	name, service, method := splitMethod(m)
	return name, []attribute.KeyValue{attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", service),
		attribute.String("rpc.method", method)}
}

type grpcServerShape struct {
	typeName func(uint64) string
}

func (s *grpcServerShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	m, _ := r.str(builtin.GRPCMethod)
	name, attrs := rpcAttrs(m)
	tt, _ := r.int(builtin.GRPCTransportType)
	at, _ := r.int(builtin.GRPCAddrType)
	ip, _ := r.str(builtin.GRPCIP)
	port, _ := r.int(builtin.GRPCPort)
	if s.typeName(uint64(tt)) == "*transport.http2Server" && s.typeName(uint64(at)) == "*net.TCPAddr" && (len(ip) == 4 || len(ip) == 16) {
		attrs = append(attrs, attribute.String("server.address", net.IP(ip).String()), attribute.Int64("server.port", port))
	}
	return name, trace.SpanKindServer, attrs
}

func (*grpcServerShape) End(trace.Span, *channel.Payload) {}

// RemoteParent continues the caller's trace when the RPC's metadata carries
// a valid W3C traceparent; a malformed one is ignored and counted.
func (s *grpcServerShape) RemoteParent(p *channel.Payload) (trace.SpanContext, bool, int) {
	r := raw(p.Attributes)
	if kt, _ := r.int(builtin.GRPCMDKeyType); s.typeName(uint64(kt)) != "metadata.mdIncomingKey" {
		return trace.SpanContext{}, false, 0
	}
	return remoteParent(r, builtin.GRPCTraceparent, "")
}

// grpcServerErrors are the codes that make a server span an error, as the
// RPC conventions say: the server's own failures, not the caller's.
var grpcServerErrors = map[int64]bool{2: true, 4: true, 12: true, 13: true, 14: true, 15: true}

// enrichGRPCServer puts the status an RPC's server wrote on its span.
func enrichGRPCServer(span trace.Span, p *channel.Payload) {
	r := raw(p.Attributes)
	code, ok := r.int(builtin.GRPCCode)
	if !ok {
		return
	}
	span.SetAttributes(attribute.Int64("rpc.grpc.status_code", code))
	if grpcServerErrors[code] {
		msg, _ := r.str(builtin.GRPCMessage)
		span.SetStatus(codes.Error, msg)
		span.SetAttributes(attribute.String("error.type", codeName(code)))
	}
}

type grpcClientShape struct{ stream bool }

func (s grpcClientShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	if s.stream {
		ss, _ := r.int(builtin.GRPCServerStreams)
		cs, _ := r.int(builtin.GRPCClientStreams)
		if ss == 0 && cs == 0 {
			return "", 0, nil // Invoke's own stream: its span is Invoke's
		}
	}
	m, _ := r.str(builtin.GRPCMethod)
	name, attrs := rpcAttrs(m)
	if t, ok := r.str(builtin.GRPCTarget); ok && t != "" {
		host, port := hostPort(grpcEndpoint(t), 443)
		attrs = append(attrs, attribute.String("server.address", host), attribute.Int("server.port", port))
	}
	return name, trace.SpanKindClient, attrs
}

// grpcEndpoint takes the address out of a dial target: "dns:///host:port",
// "passthrough:///host:port" or a plain "host:port".
func grpcEndpoint(target string) string {
	if i := strings.Index(target, "://"); i >= 0 {
		rest := target[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j+1:]
		}
		return rest
	}
	return target
}

func (grpcClientShape) End(span trace.Span, p *channel.Payload) {
	if !p.HasError() {
		span.SetAttributes(attribute.Int64("rpc.grpc.status_code", 0))
		return
	}
	switch e := p.Err().(type) {
	case *grpcStatus:
		span.SetAttributes(attribute.Int64("rpc.grpc.status_code", e.code), attribute.String("error.type", codeName(e.code)))
	case *channel.Error: // no status could be read
		span.SetAttributes(attribute.String("error.type", e.Type))
	}
}

package builtin

import (
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

const (
	grpcPkg       = "google.golang.org/grpc"
	grpcTransport = grpcPkg + "/internal/transport"
	grpcStatusPkg = grpcPkg + "/internal/status"
	genprotoRPC   = "google.golang.org/genproto/googleapis/rpc/status"
)

// The grpc-go functions traced, with their registers under Go's ABI. They
// have kept their signatures since at least v1.68, apart from the server
// stream's type (*transport.Stream until v1.69, then *transport.ServerStream
// embedding a *Stream).
//
// Server: (*Server).handleStream(t ServerTransport, stream) runs one RPC,
// unary or streaming, on its own goroutine from the first header to the
// final status: s in RAX, t's itab and data in RBX and RCX, stream in RDI.
// The final status is written, on that goroutine, by the transport's
// (*http2Server).writeStatus(s, st *status.Status) (WriteStatus until
// v1.69): st in RCX.
//
// Client: (*ClientConn).Invoke(ctx, method string, args, reply any, opts
// ...CallOption) error is a unary call: cc in RAX, method in RDI and RSI,
// the error in RAX and RBX. newClientStream(ctx, desc *StreamDesc, cc,
// method string, opts...) (ClientStream, error) opens a stream (for
// NewStream, under any interceptor): desc in RCX, cc in RDI, method in RSI
// and R8; the stream's data word in RBX, the error in RCX and RDI. A stream
// ends when (*clientStream).finish(err) runs: cs in RAX, err in RBX and RCX.
// From v1.85 the stream newClientStream returns wraps the *clientStream.
const (
	grpcServerItab, grpcServerT  = 1, 2
	grpcServerStream             = 3
	grpcStatusArg                = 2
	grpcInvokeCC, grpcInvokeM    = 0, 3
	grpcStreamDesc, grpcStreamCC = 2, 3
	grpcStreamM                  = 4
)

// grpcOffsets are the struct fields the grpc set reads.
type grpcOffsets struct {
	method, ctx, serverStream, peer, localAddr, ip uint16
	port, ctxKey, ctxVal                           uint16
	embedded, byPointer                            bool // ServerStream embeds Stream (v1.70 on), by pointer
	wrapper                                        uint16
	wrapped                                        bool // newClientStream returns a clientStreamWrapper
	statusS, errorS, target, serverStreams         uint16
	clientStreams                                  uint16
	code, message                                  uint16
	hasStatus                                      bool // genproto's layout is known
}

func grpcProbes(b *probes.Binary, o *offsets, _ Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	if _, ok := b.Func(grpcPkg + ".(*Server).handleStream"); !ok {
		if _, ok := b.Func(grpcPkg + ".(*ClientConn).Invoke"); !ok {
			return nil, nil // grpc is not used
		}
	}
	var f grpcOffsets
	if err := o.mustAll(
		fieldOffset{&f.method, grpcTransport + ".Stream.method"}, fieldOffset{&f.ctx, grpcTransport + ".Stream.ctx"},
		fieldOffset{&f.ctxKey, "context.valueCtx.key"}, fieldOffset{&f.ctxVal, "context.valueCtx.val"},
		fieldOffset{&f.peer, grpcTransport + ".http2Server.peer"}, fieldOffset{&f.localAddr, grpcPkg + "/peer.Peer.LocalAddr"},
		fieldOffset{&f.ip, "net.TCPAddr.IP"}, fieldOffset{&f.port, "net.TCPAddr.Port"},
		fieldOffset{&f.statusS, grpcStatusPkg + ".Status.s"}, fieldOffset{&f.errorS, grpcStatusPkg + ".Error.s"},
		fieldOffset{&f.target, grpcPkg + ".ClientConn.target"},
		fieldOffset{&f.serverStreams, grpcPkg + ".StreamDesc.ServerStreams"}, fieldOffset{&f.clientStreams, grpcPkg + ".StreamDesc.ClientStreams"},
	); err != nil {
		return nil, err
	}
	// From v1.70 the server's stream is a ServerStream embedding the
	// Stream, by pointer at first, by value from v1.7x: the field after it
	// tells which (8 bytes on, it was a pointer).
	if off, ok, err := o.get(grpcTransport + ".ServerStream.Stream"); err != nil {
		return nil, err
	} else if ok {
		st, err := o.must(grpcTransport + ".ServerStream.st")
		if err != nil {
			return nil, err
		}
		f.serverStream, f.embedded, f.byPointer = uint16(off), true, int64(st) == off+8
	}
	// From v1.85 newClientStream returns the stream in a wrapper, an
	// interface holding it at its first field.
	if off, ok, err := o.get(grpcPkg + ".clientStreamWrapper.ClientStream"); err != nil {
		return nil, err
	} else if ok {
		f.wrapper, f.wrapped = uint16(off), true
	}
	// The status code and message sit in genproto's Status, a module of its
	// own: without its layout the spans still come, without codes.
	f.hasStatus = o.mustAll(fieldOffset{&f.code, genprotoRPC + ".Status.Code"}, fieldOffset{&f.message, genprotoRPC + ".Status.Message"}) == nil
	if !f.hasStatus {
		o.partial = "no gRPC status codes: " + o.b.Path + " has no DWARF and its google.golang.org/genproto/googleapis/rpc is not in the offsets table"
	}
	var out []*probes.Probe
	add := func(symbol string) (*probes.Probe, error) {
		p, ok, err := probes.NewProbe(b, symbol, id+uint32(len(out)), rt)
		if err != nil || !ok {
			return nil, err
		}
		out = append(out, p)
		return p, nil
	}

	// Server: one span per RPC, its status from the status written.
	if p, err := add(grpcPkg + ".(*Server).handleStream"); err != nil {
		return nil, err
	} else if p != nil {
		// The path to a field of the Stream.
		stream := func(fieldAndMore ...uint16) []uint16 {
			switch {
			case f.embedded && f.byPointer:
				return append([]uint16{f.serverStream}, fieldAndMore...)
			case f.embedded:
				fieldAndMore[0] += f.serverStream
			}
			return fieldAndMore
		}
		capture(p, false, "method", field(grpcServerStream, 0, stream(f.method)...))
		// The incoming metadata: the transport makes the stream's context
		// a context.WithValue(ctx, mdIncomingKey{}, md), md a
		// map[string][]string; the key's type is checked in userspace.
		md := field(grpcServerStream, layoutOf(b), stream(f.ctx+8, f.ctxVal+8)...)
		md.Kind, md.Reg2 = bpf.CapMapStr, 0
		p.Recipe.Keys = []string{"traceparent"}
		capture(p, false, "traceparent", md)
		p.IncomingTrace = len(p.Recipe.Entry) // 1 + its index
		capture(p, false, "md_key_type", field(grpcServerStream, 8, stream(f.ctx+8, f.ctxKey)...))
		// The local address: the transport's peer.LocalAddr, when the
		// transport is an *http2Server and the address a *net.TCPAddr (the
		// types are checked in userspace: itab words lead to them).
		laddr := f.peer + f.localAddr
		capture(p, false, "transport_type", field(grpcServerItab, 8, 8))
		capture(p, false, "addr_type", field(grpcServerT, 8, laddr, 8))
		capture(p, false, "ip", field(grpcServerT, 0, laddr+8, f.ip))
		p.EntryAttrs[len(p.EntryAttrs)-1].Type = "bytes" // a net.IP: bytes, not text
		capture(p, false, "port", field(grpcServerT, 8, laddr+8, f.port))
		p.Spec.Name, p.Spec.Kind, p.Shape = "grpc.server", "server", &grpcServerShape{typeName: b.TypeName}
	}
	if f.hasStatus {
		sym := grpcTransport + ".(*http2Server).writeStatus"
		if _, ok := b.Func(sym); !ok {
			sym = grpcTransport + ".(*http2Server).WriteStatus"
		}
		if p, err := add(sym); err != nil {
			return nil, err
		} else if p != nil {
			capture(p, false, "code", field(grpcStatusArg, 4, f.statusS, f.code))
			capture(p, false, "message", field(grpcStatusArg, 0, f.statusS, f.message))
			span := false
			p.Spec.Name, p.Spec.Span, p.Enrich = "grpc.status", &span, enrichGRPCServer
		}
	}

	// Client: a span per unary call, and per stream until it finishes.
	// The captures that decode to attributes come first: the error (and a
	// handle) after them have none.
	errorOf := func(p *probes.Probe, reg, reg2 uint8) {
		slot := uint8(0)
		if f.hasStatus {
			capture(p, true, "code", field(reg2, 4, f.errorS, f.statusS, f.code))
			capture(p, true, "message", field(reg2, 0, f.errorS, f.statusS, f.message))
			slot = 1
		}
		p.ErrorCapture = len(p.Recipe.Return)
		p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: reg, Reg2: reg2, MaxLen: bpf.StringSlotSize, Slot: slot})
		p.ErrorOf = grpcError
	}
	if p, err := add(grpcPkg + ".(*ClientConn).Invoke"); err != nil {
		return nil, err
	} else if p != nil {
		p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapString, Reg: grpcInvokeM, Reg2: grpcInvokeM + 1, MaxLen: bpf.StringSlotSize})
		p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: "method", Type: "string", MaxLen: bpf.StringSlotSize})
		capture(p, false, "target", field(grpcInvokeCC, 0, f.target))
		errorOf(p, 0, 1)
		p.Spec.Name, p.Spec.Kind, p.Shape = "grpc.client", "client", grpcClientShape{}
	}
	finish, ok, err := probes.NewProbe(b, grpcPkg+".(*clientStream).finish", 0, rt)
	if err != nil {
		return nil, err
	}
	if ok {
		finish.IsCompletion = true
		finish.ReceiverCapture = 0
		finish.Recipe.Entry = []bpf.Capture{{Kind: bpf.CapReg, Reg: 0}}
		// The error is an argument: kept from the entry for the return.
		finish.Recipe.Save = []uint8{1, 2}
		errorOf(finish, bpf.BaseSaved, bpf.BaseSaved+1)
		if p, err := add(grpcPkg + ".newClientStream"); err != nil {
			return nil, err
		} else if p != nil {
			p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapString, Reg: grpcStreamM, Reg2: grpcStreamM + 1, MaxLen: bpf.StringSlotSize})
			p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: "method", Type: "string", MaxLen: bpf.StringSlotSize})
			capture(p, false, "target", field(grpcStreamCC, 0, f.target))
			capture(p, false, "server_streams", field(grpcStreamDesc, 1, f.serverStreams))
			capture(p, false, "client_streams", field(grpcStreamDesc, 1, f.clientStreams))
			errorOf(p, 2, 3)
			// The span lasts until the stream finishes.
			p.HandleCapture = len(p.Recipe.Return)
			handle := bpf.Capture{Kind: bpf.CapReg, Reg: 1}
			if f.wrapped {
				handle = field(1, 8, f.wrapper+8) // the interface's data word
			}
			p.Recipe.Return = append(p.Recipe.Return, handle)
			p.Spec.Async = &probes.Async{Completion: finish.Spec.Symbol, Handle: "result0"}
			p.Completion = finish
			p.Spec.Name, p.Spec.Kind, p.Shape = "grpc.client", "client", grpcClientShape{stream: true}
		}
	}
	return out, nil
}

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
	code, ok := r.int("code")
	if e.Type != "*status.Error" || !ok {
		return e
	}
	msg, _ := r.str("message")
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
	m, _ := r.str("method")
	name, attrs := rpcAttrs(m)
	tt, _ := r.int("transport_type")
	at, _ := r.int("addr_type")
	ip, _ := r.str("ip")
	port, _ := r.int("port")
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
	if kt, _ := r.int("md_key_type"); s.typeName(uint64(kt)) != "metadata.mdIncomingKey" {
		return trace.SpanContext{}, false, 0
	}
	return remoteParent(r)
}

// grpcServerErrors are the codes that make a server span an error, as the
// RPC conventions say: the server's own failures, not the caller's.
var grpcServerErrors = map[int64]bool{2: true, 4: true, 12: true, 13: true, 14: true, 15: true}

// enrichGRPCServer puts the status an RPC's server wrote on its span.
func enrichGRPCServer(span trace.Span, p *channel.Payload) {
	r := raw(p.Attributes)
	code, ok := r.int("code")
	if !ok {
		return
	}
	span.SetAttributes(attribute.Int64("rpc.grpc.status_code", code))
	if grpcServerErrors[code] {
		msg, _ := r.str("message")
		span.SetStatus(codes.Error, msg)
		span.SetAttributes(attribute.String("error.type", codeName(code)))
	}
}

type grpcClientShape struct{ stream bool }

func (s grpcClientShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	if s.stream {
		ss, _ := r.int("server_streams")
		cs, _ := r.int("client_streams")
		if ss == 0 && cs == 0 {
			return "", 0, nil // Invoke's own stream: its span is Invoke's
		}
	}
	m, _ := r.str("method")
	name, attrs := rpcAttrs(m)
	if t, ok := r.str("target"); ok && t != "" {
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

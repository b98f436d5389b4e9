package builtin

import (
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// The roles and capture keys of the grpc set: its span side
// (binder/semconv/grpc.go) reads the captures under these keys.
const (
	RoleGRPCServer = "grpc.server"
	RoleGRPCStatus = "grpc.status" // the status a server wrote, on its span
	RoleGRPCClient = "grpc.client" // a unary call
	RoleGRPCStream = "grpc.client.stream"
	RoleGRPCFinish = "grpc.finish" // a stream's completion: its error's meaning

	GRPCMethod        = "method"
	GRPCTraceparent   = "traceparent"
	GRPCMDKeyType     = "md_key_type"    // the incoming metadata's context key's type word
	GRPCTransportType = "transport_type" // the server transport's type word
	GRPCAddrType      = "addr_type"      // the local address's type word
	GRPCIP            = "ip"             // bytes
	GRPCPort          = "port"
	GRPCCode          = "code"
	GRPCMessage       = "message"
	GRPCTarget        = "target"
	GRPCServerStreams = "server_streams"
	GRPCClientStreams = "client_streams"
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
		capture(p, false, GRPCMethod, field(grpcServerStream, 0, stream(f.method)...))
		// The incoming metadata: the transport makes the stream's context
		// a context.WithValue(ctx, mdIncomingKey{}, md), md a
		// map[string][]string; the key's type is checked in userspace.
		md := field(grpcServerStream, layoutOf(b), stream(f.ctx+8, f.ctxVal+8)...)
		md.Kind, md.Reg2 = bpf.CapMapStr, 0
		p.Recipe.Keys = []string{"traceparent"}
		capture(p, false, GRPCTraceparent, md)
		p.IncomingTrace = len(p.Recipe.Entry) // 1 + its index
		capture(p, false, GRPCMDKeyType, field(grpcServerStream, 8, stream(f.ctx+8, f.ctxKey)...))
		// The local address: the transport's peer.LocalAddr, when the
		// transport is an *http2Server and the address a *net.TCPAddr (the
		// types are checked in userspace: itab words lead to them).
		laddr := f.peer + f.localAddr
		capture(p, false, GRPCTransportType, field(grpcServerItab, 8, 8))
		capture(p, false, GRPCAddrType, field(grpcServerT, 8, laddr, 8))
		capture(p, false, GRPCIP, field(grpcServerT, 0, laddr+8, f.ip))
		p.EntryAttrs[len(p.EntryAttrs)-1].Type = "bytes" // a net.IP: bytes, not text
		capture(p, false, GRPCPort, field(grpcServerT, 8, laddr+8, f.port))
		p.Spec.Name = RoleGRPCServer
		p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleGRPCServer}
	}
	if f.hasStatus {
		sym := grpcTransport + ".(*http2Server).writeStatus"
		if _, ok := b.Func(sym); !ok {
			sym = grpcTransport + ".(*http2Server).WriteStatus"
		}
		if p, err := add(sym); err != nil {
			return nil, err
		} else if p != nil {
			capture(p, false, GRPCCode, field(grpcStatusArg, 4, f.statusS, f.code))
			capture(p, false, GRPCMessage, field(grpcStatusArg, 0, f.statusS, f.message))
			p.Spec.Name = RoleGRPCStatus
			p.Role = probes.Role{Kind: probes.RoleEnrich, Name: RoleGRPCStatus}
		}
	}

	// Client: a span per unary call, and per stream until it finishes.
	// The captures that decode to attributes come first: the error (and a
	// handle) after them have none. A returned error's status code and
	// message are read through the *status.Error in its data word (reg2):
	// the span side makes the status of them (RoleGRPCFinish and the
	// client roles).
	statusOf := func(p *probes.Probe, reg2 uint8) {
		if f.hasStatus {
			capture(p, true, GRPCCode, field(reg2, 4, f.errorS, f.statusS, f.code))
			capture(p, true, GRPCMessage, field(reg2, 0, f.errorS, f.statusS, f.message))
		}
	}
	errorOf := func(p *probes.Probe, reg, reg2 uint8) {
		statusOf(p, reg2)
		slot := uint8(0)
		if f.hasStatus {
			slot = 1
		}
		p.ErrorCapture = len(p.Recipe.Return)
		p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: reg, Reg2: reg2, MaxLen: bpf.StringSlotSize, Slot: slot})
	}
	if p, err := add(grpcPkg + ".(*ClientConn).Invoke"); err != nil {
		return nil, err
	} else if p != nil {
		p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapString, Reg: grpcInvokeM, Reg2: grpcInvokeM + 1, MaxLen: bpf.StringSlotSize})
		p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: GRPCMethod, Type: "string", MaxLen: bpf.StringSlotSize})
		capture(p, false, GRPCTarget, field(grpcInvokeCC, 0, f.target))
		errorOf(p, 0, 1)
		p.Spec.Name = "grpc.client"
		p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleGRPCClient}
	}
	if sym := grpcPkg + ".(*clientStream).finish"; hasFunc(b, sym) {
		// finish(err error): the error is an argument, kept from the entry
		// for the return.
		finish, err := probes.CompileCompletion(b, sym, rt, &probes.ErrorFrom{Regs: [2]uint8{1, 2}, Arg: true})
		if err != nil {
			return nil, err
		}
		statusOf(finish, bpf.BaseSaved+1)
		finish.Role.Name = RoleGRPCFinish
		if p, err := add(grpcPkg + ".newClientStream"); err != nil {
			return nil, err
		} else if p != nil {
			p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapString, Reg: grpcStreamM, Reg2: grpcStreamM + 1, MaxLen: bpf.StringSlotSize})
			p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: GRPCMethod, Type: "string", MaxLen: bpf.StringSlotSize})
			capture(p, false, GRPCTarget, field(grpcStreamCC, 0, f.target))
			capture(p, false, GRPCServerStreams, field(grpcStreamDesc, 1, f.serverStreams))
			capture(p, false, GRPCClientStreams, field(grpcStreamDesc, 1, f.clientStreams))
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
			p.Spec.Name = "grpc.client"
			p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleGRPCStream}
		}
	}
	return out, nil
}

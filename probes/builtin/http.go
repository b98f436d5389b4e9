package builtin

import (
	"errors"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// The roles and capture keys of the http set: its span side
// (binder/semconv/http.go) reads the captures under these keys.
const (
	RoleHTTPServer = "http.server"
	RoleHTTPClient = "http.client"

	HTTPMethod      = "method"
	HTTPPath        = "path"
	HTTPTraceparent = "traceparent"
	HTTPTracestate  = "tracestate"
	HTTPTLS         = "tls"    // the request's *tls.ConnectionState, non-zero over TLS
	HTTPWriterType  = "rwtype" // the response writer's type word
	HTTPStatus      = "status" // HTTP/1's (*response).status; the client's Response.StatusCode
	HTTPStatusH2    = "status_h2"
	HTTPHost        = "host"
	HTTPRemote      = "remote"
	HTTPUserAgent   = "user_agent"
	HTTPMajor       = "major"
	HTTPMinor       = "minor"
	HTTPPattern     = "pattern"
	HTTPScheme      = "scheme"
)

// Registers under Go's ABI (0=RAX, 1=RBX, 2=RCX, 3=RDI).
const (
	// serverHandler.ServeHTTP(sh serverHandler, rw ResponseWriter, req *Request):
	// sh (a one-pointer struct) in RAX, rw's itab and data in RBX and RCX,
	// req in RDI.
	serverRWItab, serverRWData, serverReq = 1, 2, 3
	// (*Transport).roundTrip(req *Request) (*Response, error): t in RAX,
	// req in RBX; the response in RAX, the error in RBX and RCX.
	clientReq, clientResp, clientErrItab, clientErrData = 1, 0, 1, 2
	// (*persistConn).roundTrip(req *transportRequest): pc in RAX, req in RBX.
	injectConn, injectReq = 0, 1
)

func httpProbes(b *probes.Binary, o *offsets, opts Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	var out []*probes.Probe
	if p, ok, err := probes.NewProbe(b, "net/http.serverHandler.ServeHTTP", id, rt); err != nil {
		return nil, err
	} else if ok {
		if err := httpServer(b, o, opts, p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if p, ok, err := probes.NewProbe(b, "net/http.(*Transport).roundTrip", id+uint32(len(out)), rt); err != nil {
		return nil, err
	} else if ok {
		if err := httpClient(o, p); err != nil {
			return nil, err
		}
		out = append(out, p)
		if opts.Propagate {
			p, ok, err := probes.NewProbe(b, "net/http.(*persistConn).roundTrip", id+uint32(len(out)), rt)
			if err != nil {
				return nil, err
			}
			if ok {
				if err := httpInject(b, o, p); err != nil {
					return nil, err
				}
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// connChains (--propagate) gives p the chains to a connection's ports
// (tracer.h: its type, then its ports as a *net.TCPConn and as a *tls.Conn
// over one), from register reg through hops to the net.Conn interface that
// holds it.
func connChains(b *probes.Binary, o *offsets, p *probes.Probe, reg uint8, hops ...uint16) error {
	var fd, laddr, raddr, port, tlsConn uint16
	if err := o.mustAll(fieldOffset{&fd, "net.conn.fd"}, fieldOffset{&laddr, "net.netFD.laddr"},
		fieldOffset{&raddr, "net.netFD.raddr"}, fieldOffset{&port, "net.TCPAddr.Port"},
		fieldOffset{&tlsConn, "crypto/tls.Conn.conn"}); err != nil {
		return err
	}
	tcp, ok := b.TypeAddr("*net.TCPConn")
	if !ok {
		return errors.New("--propagate: no *net.TCPConn type in the binary")
	}
	p.Recipe.WantType = tcp
	if tls, ok := b.TypeAddr("*tls.Conn"); ok {
		p.Recipe.TLSType = tls
	}
	// The last hop reads the interface: its itab (whose _type is at 8), or
	// 8 bytes on, its data word. A *net.TCPConn's conn.fd is the *netFD,
	// whose addresses are *net.TCPAddr in an Addr's data word.
	last := len(hops) - 1
	data := append(append([]uint16{}, hops[:last]...), hops[last]+8)
	to := func(more ...uint16) []uint16 { return append(append([]uint16{}, data...), more...) }
	p.Recipe.Chains = []bpf.Chain{
		bpf.ChainConnType:      {Reg: reg, Hops: hops, Field: 8},
		bpf.ChainTCPLocalPort:  {Reg: reg, Hops: to(fd, laddr+8), Field: port},
		bpf.ChainTCPRemotePort: {Reg: reg, Hops: to(fd, raddr+8), Field: port},
		bpf.ChainTLSLocalPort:  {Reg: reg, Hops: to(tlsConn+8, fd, laddr+8), Field: port},
		bpf.ChainTLSRemotePort: {Reg: reg, Hops: to(tlsConn+8, fd, raddr+8), Field: port},
	}
	return nil
}

// serverConn (--propagate) gives the server probe the chains to the
// connection it serves, so that the kernel can find the client span that
// sent a request without trace context by the connection (match_tuple in
// tracer.c): the response writer is an *http.response whose conn.rwc is
// the *net.TCPConn, or a *tls.Conn over one.
func serverConn(b *probes.Binary, o *offsets, p *probes.Probe) error {
	var respConn, rwc uint16
	if err := o.mustAll(fieldOffset{&respConn, "net/http.response.conn"}, fieldOffset{&rwc, "net/http.conn.rwc"}); err != nil {
		return err
	}
	return connChains(b, o, p, serverRWData, respConn, rwc)
}

// httpInject (--propagate) makes the probe that keys each HTTP/1 request
// by its connection for the socket programs, from the goroutine that sends
// it: see inject in bpf/tracer.c, whose entry captures this follows. It
// opens no span and sends no event.
func httpInject(b *probes.Binary, o *offsets, p *probes.Probe) error {
	var conn, tlsState, treq, header uint16
	if err := o.mustAll(
		fieldOffset{&conn, "net/http.persistConn.conn"}, fieldOffset{&tlsState, "net/http.persistConn.tlsState"},
		fieldOffset{&treq, "net/http.transportRequest.Request"}, fieldOffset{&header, "net/http.Request.Header"},
	); err != nil {
		return err
	}
	if err := connChains(b, o, p, injectConn, conn); err != nil {
		return err
	}
	hdr := field(injectReq, 8, treq, header) // the map pointer
	hdr.Reg2 = layoutOf(b)
	p.Recipe.Entry = []bpf.Capture{field(injectConn, 8, tlsState), hdr}
	p.Recipe.Keys = []string{"Traceparent"}
	p.Recipe.Inject = true
	p.Spec.Name = "http.inject"
	return nil
}

// layoutOf tells the Go map layout of the binary: Swiss tables from Go
// 1.24 (the runtime then has internal/runtime/maps), classic buckets
// before.
func layoutOf(b *probes.Binary) uint8 {
	if len(b.Match("internal/runtime/maps.")) > 0 {
		return bpf.MapSwiss
	}
	return bpf.MapClassic
}

func httpServer(b *probes.Binary, o *offsets, opts Options, p *probes.Probe) error {
	var f struct{ method, url, path, header, host, remote, major, minor, tls, status, h2rws, h2status uint16 }
	if err := o.mustAll(
		fieldOffset{&f.method, "net/http.Request.Method"}, fieldOffset{&f.url, "net/http.Request.URL"}, fieldOffset{&f.path, "net/url.URL.Path"},
		fieldOffset{&f.header, "net/http.Request.Header"}, fieldOffset{&f.host, "net/http.Request.Host"}, fieldOffset{&f.remote, "net/http.Request.RemoteAddr"},
		fieldOffset{&f.major, "net/http.Request.ProtoMajor"}, fieldOffset{&f.minor, "net/http.Request.ProtoMinor"},
		fieldOffset{&f.tls, "net/http.Request.TLS"}, fieldOffset{&f.status, "net/http.response.status"},
	); err != nil {
		return err
	}
	// HTTP/2's writer: net/http's bundled copy until Go 1.26, the
	// net/http/internal/http2 package from Go 1.27, whose writer reaches
	// handlers wrapped in a one-pointer struct (so the interface's data
	// word is the same *responseWriter).
	h2Type := ""
	for _, w := range []struct{ typ, rws, status string }{
		{"*http.http2responseWriter", "net/http.http2responseWriter.rws", "net/http.http2responseWriterState.status"},
		{"http.http2ResponseWriter", "net/http/internal/http2.responseWriter.rws", "net/http/internal/http2.responseWriterState.status"},
	} {
		rws, ok, err := o.get(w.rws)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		status, err := o.must(w.status)
		if err != nil {
			return err
		}
		f.h2rws, f.h2status, h2Type = uint16(rws), status, w.typ
		break
	}
	if h2Type == "" {
		o.partial = "no HTTP/2 response writer in " + b.GoVersion + ": HTTP/2 responses have no status code"
	}
	layout := layoutOf(b)
	// At most 8 captures and 4 strings each way: what the span needs when
	// it starts (its name, its remote parent) at entry, the rest at return.
	mapStr := func(base uint8, key uint8) bpf.Capture {
		c := field(base, layout, f.header)
		c.Kind, c.Reg2 = bpf.CapMapStr, key
		return c
	}
	p.Recipe.Keys = []string{"User-Agent", "Traceparent", "Tracestate"}
	capture(p, false, HTTPMethod, field(serverReq, 0, f.method))
	capture(p, false, HTTPPath, field(serverReq, 0, f.url, f.path))
	capture(p, false, HTTPTraceparent, mapStr(serverReq, 1))
	p.IncomingTrace = len(p.Recipe.Entry) // 1 + its index
	capture(p, false, HTTPTracestate, mapStr(serverReq, 2))
	capture(p, false, HTTPTLS, field(serverReq, 8, f.tls))
	capture(p, false, HTTPWriterType, field(serverRWItab, 8, 8)) // itab._type
	// At return the request and the response writer are read again from
	// their entry values: the handler has set the route and the status.
	p.Recipe.Save = []uint8{serverReq, serverRWData}
	req, rw := uint8(bpf.BaseSaved), uint8(bpf.BaseSaved+1)
	// The status: HTTP/1's *response has it; HTTP/2's writer keeps it in its
	// state. Which one applies is told by the writer's type.
	capture(p, true, HTTPStatus, field(rw, 8, f.status))
	if h2Type != "" {
		capture(p, true, HTTPStatusH2, field(rw, 8, f.h2rws, f.h2status))
	}
	capture(p, true, HTTPHost, field(req, 0, f.host))
	capture(p, true, HTTPRemote, field(req, 0, f.remote))
	capture(p, true, HTTPUserAgent, mapStr(req, 0))
	capture(p, true, HTTPMajor, field(req, 8, f.major))
	capture(p, true, HTTPMinor, field(req, 8, f.minor))
	// The ServeMux pattern: Request.Pattern from Go 1.23, the unexported
	// Request.pat.str in Go 1.22, nothing before.
	if off, ok, err := o.get("net/http.Request.Pattern"); err != nil {
		return err
	} else if ok {
		capture(p, true, HTTPPattern, field(req, 0, uint16(off)))
	} else if pat, ok, err := o.get("net/http.Request.pat"); err != nil {
		return err
	} else if ok {
		str, err := o.must("net/http.pattern.str")
		if err != nil {
			return err
		}
		capture(p, true, HTTPPattern, field(req, 0, uint16(pat), str))
	}
	if opts.Propagate {
		if err := serverConn(b, o, p); err != nil {
			return err
		}
	}
	p.Spec.Name = "http.server"
	p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleHTTPServer, Arg: h2Type}
	// The span ends in (*conn).serve at the CALL right after ServeHTTP
	// returns (emulated, where the RET is single-stepped on every request);
	// the return captures read the saved request and writer, so they see
	// there what they saw at the RET. HTTP/2 requests end at the return
	// address of the call that reached ServeHTTP, single-stepped: a direct
	// caller's (initALPNRequest.ServeHTTP, unencryptedHTTP2Request.ServeHTTP
	// up to Go 1.26) or, from Go 1.27, the interface call in
	// http2Handler.ServeHTTP (HTTPIndirectEnds proves it the only one).
	site, err := probes.HTTPServeEndSite(b)
	var indirect []probes.Site
	if err == nil {
		indirect, err = probes.HTTPIndirectEnds(b)
	}
	probes.EndInCallers(b, p, "net/http.", site, indirect, err, opts.RetProbes)
	return nil
}

func httpClient(o *offsets, p *probes.Probe) error {
	var f struct{ method, url, scheme, host, path, status uint16 }
	if err := o.mustAll(
		fieldOffset{&f.method, "net/http.Request.Method"}, fieldOffset{&f.url, "net/http.Request.URL"}, fieldOffset{&f.scheme, "net/url.URL.Scheme"},
		fieldOffset{&f.host, "net/url.URL.Host"}, fieldOffset{&f.path, "net/url.URL.Path"}, fieldOffset{&f.status, "net/http.Response.StatusCode"},
	); err != nil {
		return err
	}
	capture(p, false, HTTPMethod, field(clientReq, 0, f.method))
	capture(p, false, HTTPScheme, field(clientReq, 0, f.url, f.scheme))
	capture(p, false, HTTPHost, field(clientReq, 0, f.url, f.host))
	capture(p, false, HTTPPath, field(clientReq, 0, f.url, f.path))
	capture(p, true, HTTPStatus, field(clientResp, 8, f.status))
	p.ErrorCapture = len(p.Recipe.Return)
	p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: clientErrItab, Reg2: clientErrData, Slot: 0, MaxLen: bpf.StringSlotSize})
	p.Spec.Name = "http.client"
	p.Outgoing = true
	p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleHTTPClient}
	return nil
}

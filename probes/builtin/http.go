package builtin

import (
	"errors"
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
	p.Recipe.WantType = tcp + b.LoadBias
	if tls, ok := b.TypeAddr("*tls.Conn"); ok {
		p.Recipe.TLSType = tls + b.LoadBias
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
	capture(p, false, "method", field(serverReq, 0, f.method))
	capture(p, false, "path", field(serverReq, 0, f.url, f.path))
	capture(p, false, "traceparent", mapStr(serverReq, 1))
	p.IncomingTrace = len(p.Recipe.Entry) // 1 + its index
	capture(p, false, "tracestate", mapStr(serverReq, 2))
	capture(p, false, "tls", field(serverReq, 8, f.tls))
	capture(p, false, "rwtype", field(serverRWItab, 8, 8)) // itab._type
	// At return the request and the response writer are read again from
	// their entry values: the handler has set the route and the status.
	p.Recipe.Save = []uint8{serverReq, serverRWData}
	req, rw := uint8(bpf.BaseSaved), uint8(bpf.BaseSaved+1)
	// The status: HTTP/1's *response has it; HTTP/2's writer keeps it in its
	// state. Which one applies is told by the writer's type.
	capture(p, true, "status", field(rw, 8, f.status))
	if h2Type != "" {
		capture(p, true, "status_h2", field(rw, 8, f.h2rws, f.h2status))
	}
	capture(p, true, "host", field(req, 0, f.host))
	capture(p, true, "remote", field(req, 0, f.remote))
	capture(p, true, "user_agent", mapStr(req, 0))
	capture(p, true, "major", field(req, 8, f.major))
	capture(p, true, "minor", field(req, 8, f.minor))
	// The ServeMux pattern: Request.Pattern from Go 1.23, the unexported
	// Request.pat.str in Go 1.22, nothing before.
	if off, ok, err := o.get("net/http.Request.Pattern"); err != nil {
		return err
	} else if ok {
		capture(p, true, "pattern", field(req, 0, uint16(off)))
	} else if pat, ok, err := o.get("net/http.Request.pat"); err != nil {
		return err
	} else if ok {
		str, err := o.must("net/http.pattern.str")
		if err != nil {
			return err
		}
		capture(p, true, "pattern", field(req, 0, uint16(pat), str))
	}
	if opts.Propagate {
		if err := serverConn(b, o, p); err != nil {
			return err
		}
	}
	p.Spec.Name = "http.server"
	p.Spec.Kind = "server"
	p.Shape = &serverShape{typeName: b.TypeName, h2Type: h2Type}
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
	capture(p, false, "method", field(clientReq, 0, f.method))
	capture(p, false, "scheme", field(clientReq, 0, f.url, f.scheme))
	capture(p, false, "host", field(clientReq, 0, f.url, f.host))
	capture(p, false, "path", field(clientReq, 0, f.url, f.path))
	capture(p, true, "status", field(clientResp, 8, f.status))
	p.ErrorCapture = len(p.Recipe.Return)
	p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: clientErrItab, Reg2: clientErrData, Slot: 0, MaxLen: bpf.StringSlotSize})
	p.Spec.Name = "http.client"
	p.Spec.Kind = "client"
	p.Outgoing = true
	p.Shape = clientShape{}
	return nil
}

// raw reads the internal attributes of a built-in probe.
type raw []attribute.KeyValue

func (r raw) str(key string) (string, bool) {
	for _, a := range r {
		if string(a.Key) == key {
			return a.Value.AsString(), true
		}
	}
	return "", false
}

// unreadable says whether the capture key could not be read or trusted
// (probes.Attributes marked it key.unreadable), and gives the attribute that
// says so under the exported name as: as.unreadable, with the reason.
func (r raw) unreadable(key, as string) (attribute.KeyValue, bool) {
	why, ok := r.str(key + probes.UnreadableSuffix)
	return attribute.String(as+probes.UnreadableSuffix, why), ok
}

func (r raw) int(key string) (int64, bool) {
	for _, a := range r {
		if string(a.Key) == key {
			return a.Value.AsInt64(), true
		}
	}
	return 0, false
}

// methodOf is method for a probe's raw "method" capture; one that could not
// be read names the span HTTP, as an unknown method does, and says so.
func methodOf(r raw) (string, []attribute.KeyValue) {
	if u, ok := r.unreadable("method", "http.request.method"); ok {
		return "HTTP", []attribute.KeyValue{u}
	}
	m, _ := r.str("method")
	return method(m)
}

var knownMethods = map[string]bool{"CONNECT": true, "DELETE": true, "GET": true, "HEAD": true, "OPTIONS": true,
	"PATCH": true, "POST": true, "PUT": true, "TRACE": true, "QUERY": true}

// method returns the semantic-convention method attributes and the name to
// use in span names.
func method(m string) (string, []attribute.KeyValue) {
	if m == "" {
		m = "GET" // net/http: an empty method means GET
	}
	if knownMethods[m] {
		return m, []attribute.KeyValue{attribute.String("http.request.method", m)}
	}
	return "HTTP", []attribute.KeyValue{attribute.String("http.request.method", "_OTHER"), attribute.String("http.request.method_original", m)}
}

func hostPort(hostport string, defaultPort int) (string, int) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.Trim(hostport, "[]"), defaultPort
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return host, defaultPort
	}
	return host, p
}

type serverShape struct {
	typeName func(uint64) string
	// h2Type names net/http's HTTP/2 response writer type in this
	// binary's release, "" when it has none.
	h2Type string
}

func (s *serverShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	name, attrs := methodOf(r)
	scheme := "http"
	if tls, _ := r.int("tls"); tls != 0 {
		scheme = "https"
	}
	if u, ok := r.unreadable("path", "url.path"); ok {
		attrs = append(attrs, u)
	} else {
		path, _ := r.str("path")
		attrs = append(attrs, attribute.String("url.path", path))
	}
	attrs = append(attrs, attribute.String("url.scheme", scheme))
	return name, trace.SpanKindServer, attrs
}

// RemoteParent continues the caller's trace when the request carries a
// valid W3C traceparent (and keeps its tracestate when that is valid too).
// Anything malformed or oversized is ignored and counted.
func (s *serverShape) RemoteParent(p *channel.Payload) (trace.SpanContext, bool, int) {
	return remoteParent(raw(p.Attributes))
}

// remoteParent reads the captured traceparent and tracestate, and says how
// many of them were malformed or oversized.
func remoteParent(r raw) (sc trace.SpanContext, ok bool, invalid int) {
	tp, ok := r.str("traceparent")
	if !ok {
		return trace.SpanContext{}, false, 0
	}
	sc, ok = ParseTraceparent(tp)
	if !ok {
		return trace.SpanContext{}, false, 1
	}
	if ts, ok := r.str("tracestate"); ok && ts != "" {
		state, err := trace.ParseTraceState(ts)
		if err != nil || strings.HasSuffix(ts, probes.TruncatedSuffix) {
			invalid++
		} else {
			sc = sc.WithTraceState(state)
		}
	}
	return sc, true, invalid
}

// ParseTraceparent parses a W3C traceparent header strictly.
func ParseTraceparent(h string) (trace.SpanContext, bool) {
	// version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2.
	if len(h) < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' || !isHex(h[:2]) || h[:2] == "ff" {
		return trace.SpanContext{}, false
	}
	if h[:2] == "00" && len(h) != 55 || len(h) > 55 && h[55] != '-' {
		return trace.SpanContext{}, false // version 00 has no more fields; later ones separate theirs
	}
	if !isHex(h[3:35]) || !isHex(h[36:52]) || !isHex(h[53:55]) {
		return trace.SpanContext{}, false
	}
	tid, err1 := trace.TraceIDFromHex(h[3:35])
	sid, err2 := trace.SpanIDFromHex(h[36:52])
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}, false // all zeros
	}
	flags, _ := strconv.ParseUint(h[53:55], 16, 8)
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.TraceFlags(flags) & trace.FlagsSampled, Remote: true}), true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func (s *serverShape) End(span trace.Span, p *channel.Payload) {
	start, end := raw(p.Attributes), raw(p.EndAttributes)
	// One SetAttributes call: the SDK de-duplicates on every call.
	attrs := make([]attribute.KeyValue, 0, 8)
	defer func() { span.SetAttributes(attrs...) }()
	name, _ := methodOf(start)
	if pattern, ok := end.str("pattern"); ok && pattern != "" {
		// "[METHOD ][HOST]/PATH": the route is the path.
		if i := strings.Index(pattern, "/"); i >= 0 {
			route := pattern[i:]
			attrs = append(attrs, attribute.String("http.route", route))
			span.SetName(name + " " + route)
		}
	}
	if ra, ok := end.str("remote"); ok && ra != "" {
		host, _ := hostPort(ra, 0)
		attrs = append(attrs, attribute.String("client.address", host))
	}
	if h, ok := end.str("host"); ok && h != "" {
		def := 80
		if tls, _ := start.int("tls"); tls != 0 {
			def = 443
		}
		host, port := hostPort(h, def)
		attrs = append(attrs, attribute.String("server.address", host), attribute.Int("server.port", port))
	}
	if ua, ok := end.str("user_agent"); ok {
		attrs = append(attrs, attribute.String("user_agent.original", ua))
	} else if u, ok := end.unreadable("user_agent", "user_agent.original"); ok {
		attrs = append(attrs, u)
	}
	major, _ := end.int("major")
	minor, _ := end.int("minor")
	switch {
	case major == 1:
		attrs = append(attrs, attribute.String("network.protocol.version", "1."+strconv.FormatInt(minor, 10)))
	case major > 1:
		attrs = append(attrs, attribute.String("network.protocol.version", strconv.FormatInt(major, 10)))
	}
	if p.HasError() {
		return // a panic: the response is not what the handler meant to write
	}
	// The status is known when the writer is net/http's own, for HTTP/1 or
	// HTTP/2: 0 means the handler wrote nothing, and net/http then sends 200.
	rwType, _ := start.int("rwtype")
	var status int64
	var ok bool
	switch t := s.typeName(uint64(rwType)); {
	case t == "*http.response":
		status, ok = end.int("status")
	case t != "" && t == s.h2Type:
		status, ok = end.int("status_h2")
	}
	if !ok {
		return
	}
	if status == 0 {
		status = 200
	}
	attrs = append(attrs, attribute.Int64("http.response.status_code", status))
	if t := statusErrorType(status, true); t != "" {
		span.SetStatus(codes.Error, "")
		attrs = append(attrs, attribute.String("error.type", t))
	}
}

// statusErrorType is the error.type of a response status, "" when it is no
// error: the semantic conventions count 4xx and 5xx as a client's failure
// but only 5xx as a server's (a 404 is the client's mistake), and name the
// error by the status code as a string ("503").
func statusErrorType(status int64, server bool) string {
	if status >= 500 || status >= 400 && !server {
		return strconv.FormatInt(status, 10)
	}
	return ""
}

type clientShape struct{}

func (clientShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	name, attrs := methodOf(r)
	scheme, _ := r.str("scheme")
	h, _ := r.str("host")
	path, _ := r.str("path")
	for _, k := range []string{"scheme", "host", "path"} {
		if u, ok := r.unreadable(k, "url.full"); ok {
			return name, trace.SpanKindClient, append(attrs, u) // nor server.address: the host is in the URL
		}
	}
	// url.full without credentials (never read) nor query (not read).
	attrs = append(attrs, attribute.String("url.full", scheme+"://"+h+path))
	def := 80
	if scheme == "https" {
		def = 443
	}
	host, port := hostPort(h, def)
	attrs = append(attrs, attribute.String("server.address", host), attribute.Int("server.port", port))
	return name, trace.SpanKindClient, attrs
}

func (clientShape) End(span trace.Span, p *channel.Payload) {
	if p.HasError() {
		if e, ok := p.Err().(*channel.Error); ok {
			span.SetAttributes(attribute.String("error.type", e.Type))
		}
		return
	}
	status, ok := raw(p.EndAttributes).int("status")
	if !ok {
		return
	}
	if t := statusErrorType(status, false); t != "" {
		span.SetStatus(codes.Error, "")
		span.SetAttributes(attribute.Int64("http.response.status_code", status), attribute.String("error.type", t))
		return
	}
	span.SetAttributes(attribute.Int64("http.response.status_code", status))
}

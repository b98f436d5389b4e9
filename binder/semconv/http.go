package semconv

import (
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// methodOf is method for a probe's raw "method" capture; one that could not
// be read names the span HTTP, as an unknown method does, and says so.
// The attributes come with room for those the shapers add after them.
func methodOf(r raw) (string, []attribute.KeyValue) {
	attrs := make([]attribute.KeyValue, 0, 6)
	if u, ok := r.unreadable(builtin.HTTPMethod, "http.request.method"); ok {
		return "HTTP", append(attrs, u)
	}
	m, _ := r.str(builtin.HTTPMethod)
	return method(attrs, m)
}

// methodName is the name methodOf gives, without its attributes.
func methodName(r raw) string {
	if _, ok := r.unreadable(builtin.HTTPMethod, "http.request.method"); ok {
		return "HTTP"
	}
	m, _ := r.str(builtin.HTTPMethod)
	if m == "" {
		return "GET"
	}
	if knownMethods[m] {
		return m
	}
	return "HTTP"
}

var knownMethods = map[string]bool{"CONNECT": true, "DELETE": true, "GET": true, "HEAD": true, "OPTIONS": true,
	"PATCH": true, "POST": true, "PUT": true, "TRACE": true, "QUERY": true}

// method appends the semantic-convention method attributes to attrs and
// returns the name to use in span names.
func method(attrs []attribute.KeyValue, m string) (string, []attribute.KeyValue) {
	if m == "" {
		m = "GET" // net/http: an empty method means GET
	}
	if knownMethods[m] {
		return m, append(attrs, attribute.String("http.request.method", m))
	}
	return "HTTP", append(attrs, attribute.String("http.request.method", "_OTHER"), attribute.String("http.request.method_original", m))
}

type serverShape struct {
	typeName func(uint64) string
	// h2Type names net/http's HTTP/2 response writer type in this
	// binary's release, "" when it has none.
	h2Type string
	// routed: the binary links a router whose route (routes.go) wins
	// over the ServeMux pattern.
	routed bool
}

func (s *serverShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	name, attrs := methodOf(r)
	scheme := "http"
	if tls, _ := r.int(builtin.HTTPTLS); tls != 0 {
		scheme = "https"
	}
	if u, ok := r.unreadable(builtin.HTTPPath, "url.path"); ok {
		attrs = append(attrs, u)
	} else {
		path, _ := r.str(builtin.HTTPPath)
		attrs = append(attrs, attribute.String("url.path", path))
	}
	attrs = append(attrs, attribute.String("url.scheme", scheme))
	return name, trace.SpanKindServer, attrs
}

// RemoteParent continues the caller's trace when the request carries a
// valid W3C traceparent (and keeps its tracestate when that is valid too).
// Anything malformed or oversized is ignored and counted.
func (s *serverShape) RemoteParent(p *channel.Payload) (trace.SpanContext, bool, int) {
	return remoteParent(raw(p.Attributes), builtin.HTTPTraceparent, builtin.HTTPTracestate)
}

// remoteParent reads the traceparent and tracestate captured under the
// keys tp and ts (ts "" when none is), and says how many of them were
// malformed or oversized.
func remoteParent(r raw, tpKey, tsKey string) (sc trace.SpanContext, ok bool, invalid int) {
	tp, ok := r.str(tpKey)
	if !ok {
		return trace.SpanContext{}, false, 0
	}
	sc, ok = ParseTraceparent(tp)
	if !ok {
		return trace.SpanContext{}, false, 1
	}
	if ts, ok := r.str(tsKey); ok && tsKey != "" && ts != "" {
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
	name := methodName(start)
	// A router's matched route, already on the span, is the more specific
	// truth: a ServeMux pattern in front of a router is its mount point
	// ("/" for a catch-all). Without one the ServeMux pattern is the
	// route.
	route, routed := "", false
	if s.routed {
		route, routed = routerRoute(span)
	}
	if pattern, ok := end.str(builtin.HTTPPattern); !routed && ok && pattern != "" {
		// "[METHOD ][HOST]/PATH": the route is the path.
		if i := strings.Index(pattern, "/"); i >= 0 {
			route = pattern[i:]
			attrs = append(attrs, attribute.String("http.route", route))
		}
	}
	if route != "" {
		span.SetName(name + " " + route)
	}
	if ra, ok := end.str(builtin.HTTPRemote); ok && ra != "" {
		host, _ := hostPort(ra, 0)
		attrs = append(attrs, attribute.String("client.address", host))
	}
	if h, ok := end.str(builtin.HTTPHost); ok && h != "" {
		def := 80
		if tls, _ := start.int(builtin.HTTPTLS); tls != 0 {
			def = 443
		}
		host, port := hostPort(h, def)
		attrs = append(attrs, attribute.String("server.address", host), attribute.Int("server.port", port))
	}
	if ua, ok := end.str(builtin.HTTPUserAgent); ok {
		attrs = append(attrs, attribute.String("user_agent.original", ua))
	} else if u, ok := end.unreadable(builtin.HTTPUserAgent, "user_agent.original"); ok {
		attrs = append(attrs, u)
	}
	major, _ := end.int(builtin.HTTPMajor)
	minor, _ := end.int(builtin.HTTPMinor)
	switch {
	case major == 1:
		attrs = append(attrs, attribute.String("network.protocol.version", http1Version(minor)))
	case major > 1:
		attrs = append(attrs, attribute.String("network.protocol.version", strconv.FormatInt(major, 10)))
	}
	if p.HasError() {
		return // a panic: the response is not what the handler meant to write
	}
	// The status is known when the writer is net/http's own, for HTTP/1 or
	// HTTP/2: 0 means the handler wrote nothing, and net/http then sends 200.
	rwType, _ := start.int(builtin.HTTPWriterType)
	var status int64
	var ok bool
	switch t := s.typeName(uint64(rwType)); {
	case t == "*http.response":
		status, ok = end.int(builtin.HTTPStatus)
	case t != "" && t == s.h2Type:
		status, ok = end.int(builtin.HTTPStatusH2)
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
	scheme, _ := r.str(builtin.HTTPScheme)
	h, _ := r.str(builtin.HTTPHost)
	path, _ := r.str(builtin.HTTPPath)
	for _, k := range []string{builtin.HTTPScheme, builtin.HTTPHost, builtin.HTTPPath} {
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
	status, ok := raw(p.EndAttributes).int(builtin.HTTPStatus)
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

// http1Version is "1.MINOR", made without an allocation for the usual 1.0
// and 1.1.
func http1Version(minor int64) string {
	switch minor {
	case 0:
		return "1.0"
	case 1:
		return "1.1"
	}
	return "1." + strconv.FormatInt(minor, 10)
}

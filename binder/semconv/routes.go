package semconv

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// enrichRoute puts the route a router matched on the http.server span
// enclosing it, as http.route; the server span's end names the span by it
// (serverShape.End), in preference to a ServeMux pattern, which for a
// router mounted under "/" is only the catch-all. An unmatched request
// puts nothing. Only a server span gets it: a custom span in between
// keeps no route (the spans are the SDK's, whose kind is readable).
func (s *Side) enrichRoute(router string) func(trace.Span, *channel.Payload) {
	ctxType := builtin.RouteCtxTypeOf(router)
	return func(span trace.Span, p *channel.Payload) {
		if ro, ok := span.(sdktrace.ReadOnlySpan); !ok || ro.SpanKind() != trace.SpanKindServer {
			return
		}
		r := raw(p.Attributes)
		if ctxType != "" {
			// The pooled value is the router's context, or the read
			// means nothing.
			if t, _ := r.int(builtin.RouteCtxType); s.typeName(uint64(t)) != ctxType {
				return
			}
		}
		if a, ok := routeAttr(router, r); ok {
			span.SetAttributes(a)
		}
	}
}

// routeAttr is the http.route (or http.route.unreadable) a router's
// captures say; false when the request matched no route.
func routeAttr(router string, r raw) (attribute.KeyValue, bool) {
	if u, ok := r.unreadable(builtin.RouteTemplate, "http.route"); ok {
		return u, true
	}
	route, _ := r.str(builtin.RouteTemplate)
	if router == builtin.RouterChi && route != "" { // "": the innermost router matched nothing
		n, _ := r.int(builtin.RoutePatterns)
		switch {
		case n > 2:
			// Deeper nesting: its middle patterns are not read.
			return attribute.String("http.route"+probes.UnreadableSuffix, probes.ReasonLength), true
		case n == 2:
			if u, ok := r.unreadable(builtin.RouteOuter, "http.route"); ok {
				return u, true
			}
			outer, _ := r.str(builtin.RouteOuter)
			route = chiPattern(outer + route)
		case n == 1:
			route = chiPattern(route)
		}
	}
	if strings.HasSuffix(route, probes.TruncatedSuffix) {
		return attribute.String("http.route"+probes.UnreadableSuffix, probes.ReasonLength), true
	}
	if route == "" {
		return attribute.KeyValue{}, false
	}
	return attribute.String("http.route", route), true
}

// chiPattern is chi's (*Context).RoutePattern of the joined patterns: a
// mount's "/*/" becomes "/", and a trailing "/" (or "//") goes.
func chiPattern(p string) string {
	for strings.Contains(p, "/*/") {
		p = strings.ReplaceAll(p, "/*/", "/")
	}
	if p != "/" {
		p = strings.TrimSuffix(p, "//")
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

// routerRoute returns the http.route a router's enricher put on a server
// span; routed is true when it put one, or said it could not read it.
func routerRoute(span trace.Span) (route string, routed bool) {
	ro, ok := span.(sdktrace.ReadOnlySpan)
	if !ok {
		return "", false
	}
	for _, a := range ro.Attributes() {
		switch a.Key {
		case "http.route":
			return a.Value.AsString(), true
		case "http.route" + probes.UnreadableSuffix:
			return "", true
		}
	}
	return "", false
}

package semconv

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// TestRouteAttr: each router's captures make its route in its own syntax;
// chi's patterns of nested routers join as chi joins them; an unmatched
// request has none; a cut or unread route is said unreadable, never
// exported.
func TestRouteAttr(t *testing.T) {
	str := attribute.String
	n := func(v int64) attribute.KeyValue { return attribute.Int64(builtin.RoutePatterns, v) }
	for _, c := range []struct {
		name, router string
		caps         []attribute.KeyValue
		want         attribute.KeyValue
		ok           bool
	}{
		{"gin", builtin.RouterGin, []attribute.KeyValue{str(builtin.RouteTemplate, "/users/:id")}, str("http.route", "/users/:id"), true},
		{"gin unmatched", builtin.RouterGin, []attribute.KeyValue{str(builtin.RouteTemplate, "")}, attribute.KeyValue{}, false},
		{"echo", builtin.RouterEcho, []attribute.KeyValue{str(builtin.RouteTemplate, "/users/:id")}, str("http.route", "/users/:id"), true},
		{"mux", builtin.RouterMux, []attribute.KeyValue{str(builtin.RouteTemplate, "/users/{id}")}, str("http.route", "/users/{id}"), true},
		{"mux: a route without a path", builtin.RouterMux, nil, attribute.KeyValue{}, false},
		{"chi", builtin.RouterChi, []attribute.KeyValue{n(1), str(builtin.RouteTemplate, "/users/{id}"), str(builtin.RouteOuter, "/users/{id}")},
			str("http.route", "/users/{id}"), true},
		{"chi mounted", builtin.RouterChi, []attribute.KeyValue{n(2), str(builtin.RouteTemplate, "/items/{id}"), str(builtin.RouteOuter, "/api/*")},
			str("http.route", "/api/items/{id}"), true},
		{"chi mounted at its root", builtin.RouterChi, []attribute.KeyValue{n(2), str(builtin.RouteTemplate, "/"), str(builtin.RouteOuter, "/api/*")},
			str("http.route", "/api"), true},
		{"chi: the innermost router matched nothing", builtin.RouterChi, []attribute.KeyValue{n(1), str(builtin.RouteTemplate, ""), str(builtin.RouteOuter, "/api/*")},
			attribute.KeyValue{}, false},
		{"chi unmatched", builtin.RouterChi, []attribute.KeyValue{n(0), str(builtin.RouteTemplate, "")}, attribute.KeyValue{}, false},
		{"chi root", builtin.RouterChi, []attribute.KeyValue{n(1), str(builtin.RouteTemplate, "/")}, str("http.route", "/"), true},
		{"chi nested deeper", builtin.RouterChi, []attribute.KeyValue{n(3), str(builtin.RouteTemplate, "/x"), str(builtin.RouteOuter, "/a/*")},
			str("http.route.unreadable", probes.ReasonLength), true},
		{"chi outer unread", builtin.RouterChi, []attribute.KeyValue{n(2), str(builtin.RouteTemplate, "/x"), str(builtin.RouteOuter+".unreadable", probes.ReasonNotText)},
			str("http.route.unreadable", probes.ReasonNotText), true},
		{"unread", builtin.RouterGin, []attribute.KeyValue{str(builtin.RouteTemplate+".unreadable", probes.ReasonReadFailed)},
			str("http.route.unreadable", probes.ReasonReadFailed), true},
		{"cut", builtin.RouterEcho, []attribute.KeyValue{str(builtin.RouteTemplate, "/very/long"+probes.TruncatedSuffix)},
			str("http.route.unreadable", probes.ReasonLength), true},
	} {
		got, ok := routeAttr(c.router, raw(c.caps))
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// TestRouteOnServerSpan: the router's route names the server span and wins
// over the ServeMux pattern in front of it ("/", a catch-all); without a
// router's route the pattern stays; a context of another type than the
// router's, an unmatched request and a span of another kind get no route.
func TestRouteOnServerSpan(t *testing.T) {
	tr := sdktrace.NewTracerProvider().Tracer("t")
	const ginCtx = 0x1000
	s := &Side{routed: true, typeName: func(a uint64) string {
		if a == ginCtx {
			return "*gin.Context"
		}
		return "*other"
	}}
	server, _ := s.Shaper(probes.Role{Kind: probes.RoleSemconv, Name: builtin.RoleHTTPServer})
	enrich, ok := s.Enricher(probes.Role{Kind: probes.RoleEnrich, Name: builtin.RoleHTTPRoute, Arg: builtin.RouterGin})
	if !ok {
		t.Fatal("no enricher for http.route")
	}
	start := &channel.Payload{Attributes: []attribute.KeyValue{attribute.String(builtin.HTTPMethod, "GET")}}
	run := func(kind trace.SpanKind, route string, ctxType int64, pattern string) sdktrace.ReadOnlySpan {
		_, span := tr.Start(context.Background(), "GET", trace.WithSpanKind(kind))
		if route != "-" {
			enrich(span, &channel.Payload{Attributes: []attribute.KeyValue{attribute.String(builtin.RouteTemplate, route), attribute.Int64(builtin.RouteCtxType, ctxType)}})
		}
		end := *start
		if pattern != "" {
			end.EndAttributes = []attribute.KeyValue{attribute.String(builtin.HTTPPattern, pattern)}
		}
		server.End(span, &end)
		span.End()
		return span.(sdktrace.ReadOnlySpan)
	}
	for _, c := range []struct {
		name           string
		kind           trace.SpanKind
		route          string // "-": the router's probe did not fire
		ctxType        int64
		pattern        string
		wantName, want string
	}{
		{"router", trace.SpanKindServer, "/users/:id", ginCtx, "", "GET /users/:id", "/users/:id"},
		{"router behind a catch-all", trace.SpanKindServer, "/users/:id", ginCtx, "/", "GET /users/:id", "/users/:id"},
		{"unmatched", trace.SpanKindServer, "", ginCtx, "", "GET", ""},
		{"no router, a ServeMux pattern", trace.SpanKindServer, "-", 0, "GET /items/{id}", "GET /items/{id}", "/items/{id}"},
		{"another type in the pool", trace.SpanKindServer, "/users/:id", 0x2000, "", "GET", ""},
		{"not a server span", trace.SpanKindInternal, "/users/:id", ginCtx, "", "GET", ""},
	} {
		sp := run(c.kind, c.route, c.ctxType, c.pattern)
		got := ""
		n := 0
		for _, a := range sp.Attributes() {
			if a.Key == "http.route" {
				got = a.Value.AsString()
				n++
			}
		}
		if c.kind != trace.SpanKindServer {
			if n != 0 {
				t.Errorf("%s: http.route %q on a %v span", c.name, got, c.kind)
			}
			continue
		}
		if sp.Name() != c.wantName || got != c.want || n > 1 {
			t.Errorf("%s: span %q http.route %q (%d times), want %q %q", c.name, sp.Name(), got, n, c.wantName, c.want)
		}
	}
}

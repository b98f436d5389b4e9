package kerneltests

import (
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// routesFixtures builds (once) the routers fixture against the oldest
// releases the routes set supports (gin v1.7.7, chi v5.2.3, gorilla/mux
// v1.7.4) with Go 1.22 (go.go122.mod: without echo, whose releases here
// need Go 1.23; normal only, its ServeMux pattern read from Request.pat),
// and with echo v4.13.4 with Go 1.23 (go.mod); and against the newest
// (go.new.mod: gin v1.12.0, chi v5.5.0, echo v4.16.5, echo v5.4.7,
// gorilla/mux v1.8.1) with Go 1.27. Go 1.23's and 1.27's normal and
// stripped (the offsets then come from the module tables).
func routesFixtures(t *testing.T) []build {
	t.Helper()
	buildsMu.Lock()
	defer buildsMu.Unlock()
	src, _ := filepath.Abs("testdata/routes")
	var out []build
	for _, c := range []struct {
		release, toolchain, mods, modfile string
		stripped                          bool
	}{
		{"go1.22", "go1.22.12", "oldest", "go.go122.mod", false},
		{"go1.23", "go1.23.12", "oldest", "go.mod", true},
		{"go1.27", "go1.27.3", "newest", "go.new.mod", true},
	} {
		for _, v := range variants[:2] {
			if v.stripped && !c.stripped {
				continue
			}
			b := build{name: c.release + "-" + c.mods + v.suffix, release: c.release, stripped: v.stripped}
			b.path = filepath.Join(workDir, "routes-"+b.name)
			if _, done := builds[b.path]; !done {
				args := append(append([]string{"-modfile=" + c.modfile}, v.args...), ".")
				if err := goBuild(src, b.path, c.toolchain, args...); err != nil {
					t.Fatal(err)
				}
				builds[b.path] = nil
			}
			out = append(out, b)
		}
	}
	return out
}

// routeWant is what one request's server span must be.
type routeWant struct {
	path, name, route string // route "": none
	status            int64  // 0: none (a panic net/http recovered)
}

// routeCmd is a fixture command and the requests it sends, in order;
// builds by a release before minGo (echo: go1.23, echo v5: go1.25) send
// none.
type routeCmd struct {
	cmd   string
	reqs  []routeWant
	minGo string
}

// routeRequests are the fixture's commands, in the order the test runs them.
var routeRequests = []routeCmd{
	{"gin", []routeWant{{"/users/7", "GET /users/:id", "/users/:id", 200}, {"/nope", "GET", "", 404}, {"/panic", "GET /panic", "/panic", 500}}, ""},
	{"chi", []routeWant{{"/users/7", "GET /users/{id}", "/users/{id}", 200}, {"/api/items/3", "GET /api/items/{id}", "/api/items/{id}", 200},
		{"/nope", "GET", "", 404}, {"/panic", "GET /panic", "/panic", 500}}, ""},
	{"echo", []routeWant{{"/users/7", "GET /users/:id", "/users/:id", 200}, {"/nope", "GET", "", 404}, {"/panic", "GET /panic", "/panic", 500}}, "go1.23"},
	{"echo5", []routeWant{{"/users/7", "GET /users/:id", "/users/:id", 200}, {"/nope", "GET", "", 404}, {"/panic", "GET /panic", "/panic", 0}}, "go1.25"},
	{"mux", []routeWant{{"/users/7", "GET /users/{id}", "/users/{id}", 200}, {"/nope", "GET", "", 404}, {"/panic", "GET /panic", "/panic", 0}}, ""},
	// gin behind a ServeMux "/": gin's route wins over the catch-all.
	{"outer", []routeWant{{"/users/7", "GET /users/:id", "/users/:id", 200}}, ""},
}

// TestBuiltinRoutes: each router's matched route names the net/http server
// span ("GET /users/:id" in the router's syntax) and is its http.route, on
// that one span (no second one); an unmatched request keeps the plain
// name and no route; a panicking handler's span is an error (a 500 from
// the router's recovery, or net/http's own recovery for gorilla/mux and
// echo v5, whose route is read before the handler, or as the panic
// unwinds) and keeps its route; gin mounted under a ServeMux catch-all
// gets gin's route, not "/".
func TestBuiltinRoutes(t *testing.T) {
	for _, b := range routesFixtures(t) {
		t.Run(b.name, func(t *testing.T) {
			tg := startTarget(t, b.path)
			ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http", "routes"} })
			r := ss.s.Builtins()[1]
			routers := map[string]int{"go1.22": 3, "go1.23": 4, "go1.27": 5}[b.release] // echo v4 from Go 1.23, v5 from 1.25
			if r.Set != "routes" || !r.Applied || r.Reason != "" || len(r.Probes) != routers {
				t.Fatalf("routes set: %+v", r)
			}
			for f, src := range r.Offsets {
				want := "DWARF"
				if b.stripped {
					want = "table (github.com/"
				}
				if !strings.HasPrefix(src, want) {
					t.Errorf("offset of %s from %q, want %s", f, src, want)
				}
			}
			var want []routeWant
			for _, c := range routeRequests {
				if c.minGo != "" && probes.ReleaseLess(b.release, c.minGo) {
					continue
				}
				tg.run(t, c.cmd)
				want = append(want, c.reqs...)
			}
			checkServerSpans(t, ss.stop(t), want)
		})
	}
}

// TestBuiltinRoutesOff: without the routes set (--builtin http) the spans
// of the same requests have no router's route: gin's are plain "GET", and
// gin behind a ServeMux gets the ServeMux's catch-all pattern.
func TestBuiltinRoutesOff(t *testing.T) {
	var b build
	for _, f := range routesFixtures(t) {
		if f.release == "go1.27" && !f.stripped {
			b = f // the newest, with DWARF
		}
	}
	tg := startTarget(t, b.path)
	ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http"} })
	tg.run(t, "gin")
	tg.run(t, "outer")
	checkServerSpans(t, ss.stop(t), []routeWant{{"/users/7", "GET", "", 200}, {"/nope", "GET", "", 404}, {"/panic", "GET", "", 500},
		{"/users/7", "GET /", "/", 200}})
}

// checkServerSpans checks the server spans, in start order, against want:
// one per request, each named and routed as want says.
func checkServerSpans(t *testing.T, spans []sdktrace.ReadOnlySpan, want []routeWant) {
	t.Helper()
	var servers []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			servers = append(servers, s)
		}
	}
	byStart(servers)
	if len(servers) != len(want) {
		t.Fatalf("%d server spans, want one per request, %d: %s", len(servers), len(want), spanNames(servers))
	}
	for i, w := range want {
		s := servers[i]
		a := attrs(s)
		route, hasRoute := a["http.route"]
		if a["url.path"] != w.path || s.Name() != w.name || hasRoute != (w.route != "") || hasRoute && route != w.route {
			t.Errorf("request %d %s: span %q, url.path %v, http.route %v (present %v); want %q, route %q", i, w.path, s.Name(), a["url.path"], route, hasRoute, w.name, w.route)
		}
		if _, ok := a["http.route.unreadable"]; ok {
			t.Errorf("request %d %s: route unreadable: %v", i, w.path, a["http.route.unreadable"])
		}
		status, _ := a["http.response.status_code"].(int64)
		wantErr := w.status == 0 || w.status >= 500
		if status != w.status || (s.Status().Code == codes.Error) != wantErr {
			t.Errorf("request %d %s: status code %d, span status %v; want %d, error %v", i, w.path, status, s.Status(), w.status, wantErr)
		}
		if w.status == 0 && !strings.HasPrefix(s.Status().Description, "panic: ") {
			t.Errorf("request %d %s: status %q, want the handler's panic", i, w.path, s.Status().Description)
		}
	}
}

// TestRoutesOffsetsNeverGuessed: in a stripped binary whose gin release is
// not in the offsets table, gin's route is left out, saying why, and the
// other routers still apply: an offset is never guessed.
func TestRoutesOffsetsNeverGuessed(t *testing.T) {
	var b build
	for _, f := range routesFixtures(t) {
		if f.release == "go1.27" && f.stripped {
			b = f
		}
	}
	ps, r, err := resolveAs(t, b.path, "github.com/gin-gonic/gin", "v1.99.0", "routes")
	if err != nil || len(r) != 1 || !r[0].Applied || len(ps) != 4 ||
		!strings.Contains(r[0].Reason, "gin: ") || !strings.Contains(r[0].Reason, "github.com/gin-gonic/gin@v1.99.0 is not in the offsets table") {
		t.Fatalf("%d probes, reports %+v, %v: want gin left out, the other four routers applied", len(ps), r, err)
	}
	for _, p := range ps {
		if p.Role.Arg == builtin.RouterGin {
			t.Errorf("gin probed at %s", p.Spec.Symbol)
		}
	}
}

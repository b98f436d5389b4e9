package kerneltests

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
	promexp "github.com/tcagent/tcagent/exporter/prometheus"
	"github.com/tcagent/tcagent/internal/gotoolchain"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
	"github.com/tcagent/tcagent/reader"
)

// oldToolchains are the releases before runtime.g.parentGoid (Go 1.21),
// whose goroutine lineage comes from runtime.newproc1's callergp argument.
// Debian 12 ships programs built by Go 1.19.
var oldToolchains = []struct{ release, toolchain string }{
	{"go1.19", "go1.19.13"},
	{"go1.20", "go1.20.14"},
}

// oldBuilds builds (once) the go119 fixture with Go 1.19 and 1.20: normal,
// stripped, and stripped PIE.
func oldBuilds(t *testing.T) []build {
	t.Helper()
	buildsMu.Lock()
	defer buildsMu.Unlock()
	if bs, ok := builds["go119"]; ok {
		return bs
	}
	src, _ := filepath.Abs(filepath.Join("testdata", "go119"))
	var bs []build
	for _, tc := range oldToolchains {
		for _, v := range variants {
			b := build{name: tc.release + v.suffix, release: tc.release, stripped: v.stripped, pie: v.pie}
			b.path = filepath.Join(workDir, "go119-"+b.name)
			if err := gotoolchain.Build(tc.toolchain, src, b.path, filepath.Join(workDir, "oldgo-modcache"), append(append([]string{}, v.args...), ".")...); err != nil {
				t.Fatal(err)
			}
			bs = append(bs, b)
		}
	}
	builds["go119"] = bs
	return bs
}

func forEachOldBuild(t *testing.T, f func(t *testing.T, b build)) {
	for _, b := range oldBuilds(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// TestOldGoRuntime: Go 1.19 and 1.20 have no g.parentGoid, and the goid
// offset of the table is DWARF's.
func TestOldGoRuntime(t *testing.T) {
	for _, b := range oldBuilds(t) {
		bin, err := probes.Open(b.path)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := bin.Runtime()
		bin.Close()
		want := "DWARF"
		if b.stripped {
			want = "table"
		}
		if err != nil || rt.Source != want || rt.HasParentGoid() || rt.GoidOffset != 152 || rt.StackHiOffset != 8 {
			t.Errorf("%s: %+v %v, want goid at 152 from %s and no parentGoid", b.name, rt, err, want)
		}
	}
}

// oldSpans attaches to a fresh target of b with yaml, runs cmds and returns
// the spans.
func oldSpans(t *testing.T, b build, yaml string, cmds ...string) []sdktrace.ReadOnlySpan {
	t.Helper()
	tg := startTarget(t, b.path)
	ss := attach(t, tg.pid(), yaml)
	for _, c := range cmds {
		tg.run(t, c)
	}
	return ss.stop(t)
}

func oneNamed(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	s := named(spans, name)
	if len(s) != 1 {
		t.Fatalf("%d %s spans in %s", len(s), name, spanNames(spans))
	}
	return s[0]
}

// TestOldGoLifecycle runs the lifecycle scenarios of the 1.21+ tests on Go
// 1.19 and 1.20 builds, with the same assertions: nested and recursive
// calls, goroutine lineage three go statements down, async goroutines,
// panics recovered and not, runtime.Goexit, returned errors.
func TestOldGoLifecycle(t *testing.T) {
	forEachOldBuild(t, func(t *testing.T, b build) {
		t.Run("nested", func(t *testing.T) {
			spans := oldSpans(t, b, nestedYAML, "nested")
			if got := spanNames(spans); got != "inner,middle,outer" {
				t.Fatalf("ended spans %s, want inner,middle,outer", got)
			}
			inner, middle, outer := spans[0], spans[1], spans[2]
			if outer.Parent().IsValid() || !isChildOf(middle, outer) || !isChildOf(inner, middle) {
				t.Error("nesting is wrong: want outer > middle > inner")
			}
		})
		t.Run("recurse", func(t *testing.T) {
			spans := oldSpans(t, b, `
probes:
  - symbol: main.Recurse
    name: recurse
    signature: "func(n int) int"
    attributes: [{key: n, from: arg0, type: int}, {key: r, from: result0, type: int}]
`, "recurse")
			byN := map[int64]sdktrace.ReadOnlySpan{}
			for _, s := range spans {
				a := attrs(s)
				byN[a["n"].(int64)] = s
				if a["r"] != a["n"] {
					t.Errorf("Recurse(%v) returned %v", a["n"], a["r"])
				}
			}
			if len(spans) != 50 || len(byN) != 50 {
				t.Fatalf("got %d spans for 50 calls", len(spans))
			}
			for n := int64(1); n < 50; n++ {
				if !isChildOf(byN[n], byN[n+1]) {
					t.Errorf("Recurse(%d) is not a child of Recurse(%d)", n, n+1)
				}
			}
			if byN[50].Parent().IsValid() {
				t.Error("Recurse(50) has a parent")
			}
		})
		t.Run("lineage", func(t *testing.T) {
			spans := oldSpans(t, b, `
probes:
  - {symbol: main.Parent, name: parent, signature: "func() int"}
  - {symbol: main.Parent3, name: parent3, signature: "func() int"}
`+childProbe, "fanout", "fanout3")
			parent, parent3 := oneNamed(t, spans, "parent"), oneNamed(t, spans, "parent3")
			children := named(spans, "child")
			if len(children) != 4 {
				t.Fatalf("spans %s", spanNames(spans))
			}
			ids := map[int64]bool{}
			for _, c := range children {
				id := attrs(c)["id"].(int64)
				ids[id] = true
				want := parent
				if id == 100 {
					want = parent3 // a great-grandchild goroutine
				}
				if !isChildOf(c, want) {
					t.Errorf("child %d is not a child of %s", id, want.Name())
				}
				if r := endReason(c); r != "" {
					t.Errorf("child %d ended by the agent (%s)", id, r)
				}
			}
			if len(ids) != 4 || !ids[0] || !ids[1] || !ids[2] || !ids[100] {
				t.Errorf("children %v, want 0, 1, 2 and 100", ids)
			}
		})
		t.Run("async", func(t *testing.T) {
			spans := oldSpans(t, b, `
probes:
  - symbol: main.AsyncWork
    name: async.work
    signature: "func(wg *int) int"
    async: {goroutines: true}
`+childProbe, "asyncgo")
			w := oneNamed(t, spans, "async.work")
			children := named(spans, "child")
			if len(children) != 2 {
				t.Fatalf("spans %s", spanNames(spans))
			}
			if r := endReason(w); r != "" {
				t.Fatalf("async.work ended by the agent (%s), not by its goroutines", r)
			}
			for _, c := range children {
				if !isChildOf(c, w) {
					t.Errorf("child %v is not a child of async.work", attrs(c)["id"])
				}
				if w.EndTime().Before(c.EndTime()) {
					t.Errorf("async.work ended before its goroutine's child span")
				}
			}
			if d := w.EndTime().Sub(w.StartTime()); d < 50*time.Millisecond {
				t.Errorf("async.work lasted %v, want at least the 50ms its last goroutine slept", d)
			}
		})
		t.Run("panics", func(t *testing.T) {
			spans := oldSpans(t, b, `
probes:
  - {symbol: main.Recoverer, name: recoverer, signature: "func() error"}
  - {symbol: main.PanicA, name: panic.a, signature: "func() int"}
  - {symbol: main.PanicB, name: panic.b, signature: "func() int"}
  - {symbol: main.Handler, name: handler, signature: "func(n int) int"}
  - {symbol: main.Exiter, name: exiter, signature: "func() int"}
`, "panic", "httppanic", "goexit", "nested")
			for _, name := range []string{"panic.a", "panic.b"} {
				if s := oneNamed(t, spans, name); s.Status().Code != codes.Error || s.Status().Description != "panic: boom" {
					t.Errorf("%s: status %v, want error 'panic: boom'", name, s.Status())
				}
			}
			if s := oneNamed(t, spans, "recoverer"); s.Status().Description != "recovered: boom" || endReason(s) != "" {
				t.Errorf("recoverer: status %v reason %q", s.Status(), endReason(s))
			}
			if !isChildOf(oneNamed(t, spans, "panic.b"), oneNamed(t, spans, "panic.a")) ||
				!isChildOf(oneNamed(t, spans, "panic.a"), oneNamed(t, spans, "recoverer")) {
				t.Error("panic frames nest wrongly")
			}
			if s := oneNamed(t, spans, "handler"); s.Status().Code != codes.Error || s.Status().Description != "panic: handler failed" {
				t.Errorf("handler that panicked in net/http: status %v", s.Status())
			}
			if s := oneNamed(t, spans, "exiter"); s.Status().Code != codes.Unset || endReason(s) != lifecycle.EndGoroutineExit {
				t.Errorf("exiter (runtime.Goexit): status %v reason %q", s.Status(), endReason(s))
			}
		})
		t.Run("errors", func(t *testing.T) {
			spans := oldSpans(t, b, `
probes:
  - symbol: main.Fail
    name: fail
    signature: "func(mode int) (int, error)"
    attributes: [{key: mode, from: arg0, type: int}]
`, "errors")
			want := []struct {
				code codes.Code
				msg  string
			}{{codes.Error, "plain failure"}, {codes.Error, "wrapped: base failure"}, {codes.Unset, ""}, {codes.Error, "*main.codeError"}}
			if len(spans) != len(want) {
				t.Fatalf("spans %s", spanNames(spans))
			}
			for i, w := range want {
				s := spans[i]
				if attrs(s)["mode"] != int64(i) || s.Status().Code != w.code || s.Status().Description != w.msg {
					t.Errorf("mode %d: mode %v status %v %q, want %v %q", i, attrs(s)["mode"], s.Status().Code, s.Status().Description, w.code, w.msg)
				}
			}
		})
		t.Run("types", func(t *testing.T) {
			spans := oldSpans(t, b, `
probes:
  - symbol: main.Types
    name: types
    signature: "func(i int, u uint, b bool, s string, small int8) (int, string)"
    attributes:
      - {key: i, from: arg0, type: int}
      - {key: s, from: arg3, type: string}
      - {key: small, from: arg4, type: int}
      - {key: r1, from: result1, type: string}
`, "types")
			if len(spans) != 2 {
				t.Fatalf("spans %s", spanNames(spans))
			}
			a := attrs(spans[0])
			for k, v := range map[string]any{"i": int64(-42), "s": "hello", "small": int64(-7), "r1": "hello!"} {
				if a[k] != v {
					t.Errorf("%s = %#v, want %#v", k, a[k], v)
				}
			}
			if s, _ := attrs(spans[1])["s"].(string); s != strings.Repeat("x", probes.DefaultMaxString)+probes.TruncatedSuffix {
				t.Errorf("300-byte string captured as %q", s)
			}
		})
	})
}

// TestOldGoBuiltinHTTP runs the http built-ins on Go 1.19 and 1.20 builds:
// server and client spans as on 1.21+, without http.route (these releases'
// ServeMux has no patterns to read). Stripped builds need the offsets
// table to cover their release; until it does the set is skipped, naming
// the release.
func TestOldGoBuiltinHTTP(t *testing.T) {
	forEachOldBuild(t, func(t *testing.T, b build) {
		if b.stripped && builtin.TableOffsets(b.release) == nil {
			bin, err := probes.Open(b.path)
			if err != nil {
				t.Fatal(err)
			}
			defer bin.Close()
			rt, err := bin.Runtime()
			if err != nil {
				t.Fatal(err)
			}
			ps, r, err := builtin.Resolve(bin, []string{"http"}, builtin.Options{}, rt, 0)
			if err != nil || len(ps) != 0 || len(r) != 1 || r[0].Applied || !strings.Contains(r[0].Reason, b.release) ||
				!strings.Contains(r[0].Reason, "not in the offsets table") {
				t.Fatalf("%d probes, report %+v, %v: want http skipped, naming %s", len(ps), r, err, b.release)
			}
			return
		}
		tg := startTarget(t, b.path)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http"} })
		r := ss.s.Builtins()
		if len(r) != 1 || !r[0].Applied || len(r[0].Probes) != 2 {
			t.Fatalf("built-in report %+v", r)
		}
		if _, ok := r[0].Offsets["net/http.Request.Pattern"]; ok {
			t.Errorf("%s has a Request.Pattern", b.release)
		}
		tg.run(t, "http")
		spans := ss.stop(t)
		servers := map[string][]sdktrace.ReadOnlySpan{}
		clients := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range spans {
			a := attrs(s)
			if _, ok := a["http.route"]; ok {
				t.Errorf("%s: http.route %v before Go 1.22", s.Name(), a["http.route"])
			}
			switch s.SpanKind() {
			case trace.SpanKindServer:
				servers[a["url.path"].(string)] = append(servers[a["url.path"].(string)], s)
			case trace.SpanKindClient:
				u := a["url.full"].(string)
				clients[s.Name()+" "+u[strings.LastIndex(u, "/"):]] = s
			}
		}
		// The panicking handler closes its connection; the client retries
		// that idempotent GET once on a new one.
		if n := len(servers["/boom"]); len(servers) != 4 || n < 1 || n > 2 || len(clients) != 5 {
			t.Fatalf("server spans %v, %d client spans (%s)", servers, len(clients), spanNames(spans))
		}
		check := func(s sdktrace.ReadOnlySpan, name string, want map[string]any, code codes.Code, msg string) {
			t.Helper()
			if s == nil {
				t.Errorf("no %s span", name)
				return
			}
			a := attrs(s)
			if s.Name() != name {
				t.Errorf("span %q, want %q", s.Name(), name)
			}
			for k, v := range want {
				if a[k] != v {
					t.Errorf("%s: %s = %#v, want %#v", name, k, a[k], v)
				}
			}
			if s.Status().Code != code || s.Status().Description != msg {
				t.Errorf("%s: status %v, want %v %q", name, s.Status(), code, msg)
			}
			if r := endReason(s); r != "" {
				t.Errorf("%s ended by the agent: %s", name, r)
			}
		}
		users := servers["/users/42"]
		if len(users) != 1 {
			t.Fatalf("%d /users/42 server spans", len(users))
		}
		port, _ := attrs(users[0])["server.port"].(int64)
		check(users[0], "GET", map[string]any{"http.request.method": "GET", "http.response.status_code": int64(200),
			"url.scheme": "http", "network.protocol.version": "1.1", "server.address": "127.0.0.1", "client.address": "127.0.0.1",
			"user_agent.original": "tcagent-test/1.0"}, codes.Unset, "")
		check(servers["/fail"][0], "POST", map[string]any{"http.request.method": "POST", "http.response.status_code": int64(500),
			"user_agent.original": "Go-http-client/1.1"}, codes.Error, "")
		check(servers["/nope"][0], "GET", map[string]any{"http.response.status_code": int64(404)}, codes.Unset, "")
		for _, s := range servers["/boom"] {
			check(s, "GET", map[string]any{"url.path": "/boom"}, codes.Error, "panic: handler failed")
		}
		if port == 0 {
			t.Fatal("no server port")
		}
		check(clients["GET /42"], "GET", map[string]any{"http.response.status_code": int64(200),
			"url.full": fmt.Sprintf("http://127.0.0.1:%d/users/42", port), "server.address": "127.0.0.1", "server.port": port}, codes.Unset, "")
		check(clients["POST /fail"], "POST", map[string]any{"http.response.status_code": int64(500), "error.type": "500"}, codes.Error, "")
		check(clients["GET /nope"], "GET", map[string]any{"http.response.status_code": int64(404)}, codes.Error, "")
		// Not a type whose message is read: the type stands for it.
		check(clients["GET /x"], "GET", map[string]any{"error.type": "*net.OpError"}, codes.Error, "*net.OpError")
	})
}

// TestUnreadableValues: a probe spec wrong about an argument (a *Blob read
// as a string, which a stripped binary cannot contradict) gives
// blob.unreadable, not the struct's bytes; an error whose message cannot be
// read gets its type name; both are counted, on the Prometheus endpoint
// too. On Go 1.19 and 1.20 stripped builds and the fixture built by the
// local Go.
func TestUnreadableValues(t *testing.T) {
	const yaml = `
probes:
  - symbol: main.Opaque
    name: opaque
    signature: "func(s string) int"
    attributes: [{key: blob, from: arg0, type: string}]
  - symbol: main.Fail
    name: fail
    signature: "func(mode int) (int, error)"
    attributes: [{key: mode, from: arg0, type: int}]
  - symbol: main.Types
    name: types
    signature: "func(i int, u uint, b bool, s string, small int8) (int, string)"
    attributes: [{key: s, from: arg3, type: string}]
`
	bs := oldBuilds(t)
	local := build{name: "local-stripped", stripped: true, path: filepath.Join(workDir, "go119-local-stripped")}
	src, _ := filepath.Abs(filepath.Join("testdata", "go119"))
	if err := goBuild(src, local.path, "local", "-ldflags=-s -w", "."); err != nil {
		t.Fatal(err)
	}
	for _, b := range append(bs, local) {
		if !b.stripped {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			tg := startTarget(t, b.path)
			m := promexp.New(0)
			ss := attach(t, tg.pid(), yaml)
			m.AddSession(ss.s)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			addr, err := m.Serve(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			tg.run(t, "opaque")
			tg.run(t, "errors")
			tg.run(t, "types")
			spans := ss.stop(t) // publishes the final counts
			a := attrs(oneNamed(t, spans, "opaque"))
			if _, ok := a["blob"]; ok || a["blob.unreadable"] != probes.ReasonNotText {
				t.Errorf("opaque: attributes %v, want blob.unreadable=%s and no blob", a, probes.ReasonNotText)
			}
			for _, s := range named(spans, "types") {
				if a := attrs(s); a["s"] == nil || a["s.unreadable"] != nil {
					t.Errorf("types: a real string marked: %v", a)
				}
			}
			fails := named(spans, "fail")
			if len(fails) != 4 || fails[3].Status().Description != "*main.codeError" || fails[0].Status().Description != "plain failure" {
				t.Fatalf("fail spans %s", spanNames(fails))
			}
			want := reader.UnreadableCounts{Capture: 1, Error: 1}
			if got := ss.s.Stats().Unreadable; got != want {
				t.Errorf("counted %+v, want %+v", got, want)
			}
			for what, n := range map[string]float64{"capture": 1, "error": 1, "header": 0, "panic": 0} {
				if got := scrape(t, addr.String(), "tcagent_reads_unreadable_total", `what="`+what+`"`); got != n {
					t.Errorf("tcagent_reads_unreadable_total{what=%q} = %v, want %v", what, got, n)
				}
			}
		})
	}
}

// TestOldGoBuiltinSQL runs the sql built-ins on Go 1.19 and 1.20 builds
// against a real PostgreSQL (lib/pq), with the assertions of the 1.21+
// test. Stripped builds need no struct offset for it: the driver module
// names the database.
func TestOldGoBuiltinSQL(t *testing.T) {
	dsn := startPostgres(t)
	forEachOldBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path, "TCAGENT_PG_DSN="+dsn)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"sql"} })
		if r := ss.s.Builtins(); len(r) != 1 || !r[0].Applied {
			t.Fatalf("built-in report %+v", r)
		}
		tg.run(t, "sql")
		checkSQLSpans(t, ss.stop(t), "postgresql", "*pq.Error", []sqlCase{
			{"SELECT ?", "SELECT", "SELECT", codes.Unset},
			{"CREATE TABLE IF NOT EXISTS items (id int, name text)", "CREATE", "CREATE", codes.Unset},
			{"INSERT INTO items VALUES ($1, $2), ($3, $4)", "INSERT", "INSERT", codes.Unset},
			{"SELECT id, name FROM items ORDER BY id", "SELECT", "SELECT", codes.Unset},
			{"SELEC broken", "postgresql", "", codes.Error},
			{"UPDATE items SET name = $1 WHERE id = $2", "UPDATE", "UPDATE", codes.Unset},
		}, "SELECT id, name FROM items ORDER BY id")
	})
}

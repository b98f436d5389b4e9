package kerneltests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// TestBuiltinHTTP traces net/http servers and clients with no probe file,
// in builds with DWARF and stripped ones (offsets from the table).
func TestBuiltinHTTP(t *testing.T) {
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http"} })
		if r := ss.s.Builtins(); len(r) != 1 || !r[0].Applied || len(r[0].Probes) != 2 {
			t.Fatalf("built-in report %+v", r)
		}
		for f, src := range ss.s.Builtins()[0].Offsets {
			if want := map[bool]string{false: "DWARF", true: "table (" + b.release + ")"}[b.stripped]; src != want {
				t.Errorf("offset of %s from %q, want %q", f, src, want)
			}
		}
		tg.run(t, "http")
		spans := ss.stop(t)
		var servers, clients []sdktrace.ReadOnlySpan
		for _, s := range spans {
			switch s.SpanKind() {
			case trace.SpanKindServer:
				servers = append(servers, s)
			case trace.SpanKindClient:
				clients = append(clients, s)
			}
		}
		// The panicking handler closes its connection; the client retries
		// that idempotent GET once on a new one, so /boom is served twice.
		byPath := map[string]sdktrace.ReadOnlySpan{}
		boom := 0
		for _, s := range servers {
			p := attrs(s)["url.path"].(string)
			if p == "/boom" {
				boom++
				if s.Status().Description != "panic: handler failed" {
					t.Errorf("/boom span status %v", s.Status())
				}
			}
			byPath[p] = s
		}
		if len(servers) != 3+boom || boom < 1 || boom > 2 || len(clients) != 5 {
			t.Fatalf("%d server (%d for /boom) and %d client spans (%s), want 4 or 5 and 5", len(servers), boom, len(clients), spanNames(spans))
		}
		port := int64(0)
		check := func(s sdktrace.ReadOnlySpan, name string, want map[string]any, code codes.Code, msg string) {
			t.Helper()
			if s == nil {
				t.Errorf("no %s span", name)
				return
			}
			if s.Name() != name {
				t.Errorf("span %q, want %q", s.Name(), name)
			}
			a := attrs(s)
			for k, v := range want {
				if a[k] != v {
					t.Errorf("%s: %s = %#v, want %#v", name, k, a[k], v)
				}
			}
			if s.Status().Code != code || !strings.HasPrefix(s.Status().Description, msg) {
				t.Errorf("%s: status %v, want %v %q", name, s.Status(), code, msg)
			}
			if r := endReason(s); r != "" {
				t.Errorf("%s ended by the agent: %s", name, r)
			}
		}
		users := byPath["/users/42"]
		if users != nil {
			port, _ = attrs(users)["server.port"].(int64)
		}
		check(users, "GET /users/{id}", map[string]any{"http.request.method": "GET", "http.route": "/users/{id}",
			"http.response.status_code": int64(200), "url.scheme": "http", "network.protocol.version": "1.1",
			"server.address": "127.0.0.1", "client.address": "127.0.0.1", "user_agent.original": "tcagent-test/1.0"}, codes.Unset, "")
		check(byPath["/fail"], "POST /fail", map[string]any{"user_agent.original": "Go-http-client/1.1"}, codes.Error, "")
		check(byPath["/fail"], "POST /fail", map[string]any{"http.request.method": "POST", "http.route": "/fail",
			"http.response.status_code": int64(500)}, codes.Error, "")
		check(byPath["/nope"], "GET", map[string]any{"http.response.status_code": int64(404)}, codes.Unset, "")
		// The route is read when ServeHTTP returns; a panic unwinds it first.
		check(byPath["/boom"], "GET", map[string]any{"url.path": "/boom"}, codes.Error, "panic: handler failed")
		if port == 0 {
			t.Fatal("no server port")
		}
		byURL := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range clients {
			byURL[s.Name()+" "+attrs(s)["url.full"].(string)] = s
		}
		base := "http://127.0.0.1:" + itoa(port)
		check(byURL["GET "+base+"/users/42"], "GET", map[string]any{"http.response.status_code": int64(200),
			"server.address": "127.0.0.1", "server.port": port}, codes.Unset, "")
		check(byURL["POST "+base+"/fail"], "POST", map[string]any{"http.response.status_code": int64(500), "error.type": "500"}, codes.Error, "")
		check(byURL["GET "+base+"/nope"], "GET", map[string]any{"http.response.status_code": int64(404)}, codes.Error, "")
		var refused sdktrace.ReadOnlySpan
		for k, s := range byURL {
			if strings.HasSuffix(k, "/x") {
				refused = s
			}
		}
		check(refused, "GET", map[string]any{"error.type": "*net.OpError"}, codes.Error, "")
		// *net.OpError is not one of the types whose message is read: its
		// type stands for the message.
		if refused != nil && refused.Status().Description != "*net.OpError" {
			t.Errorf("transport error message %q", refused.Status().Description)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// resolveAs resolves the built-in set on the binary at path as if it
// linked module at version (a release the offsets table lacks).
func resolveAs(t *testing.T, path, module, version, set string) ([]*probes.Probe, []builtin.Report, error) {
	t.Helper()
	bin, err := probes.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bin.Close() })
	rt, _ := bin.Runtime()
	for i, m := range bin.Modules {
		if m.Path == module {
			bin.Modules[i].Version = version
		}
	}
	return builtin.Resolve(bin, []string{set}, builtin.Options{}, rt, 0)
}

// TestModuleOffsetsNeverGuessed: a stripped binary linking a module release
// the table does not know skips the set, with the reason.
func TestModuleOffsetsNeverGuessed(t *testing.T) {
	b := fixturesOf(t, "redis")[1] // go1.22, stripped
	ps, r, err := resolveAs(t, b.path, "github.com/redis/go-redis/v9", "v9.99.0", "redis")
	if err != nil || len(ps) != 0 || len(r) != 1 || r[0].Applied || !strings.Contains(r[0].Reason, "v9.99.0 is not in the offsets table") {
		t.Fatalf("%d probes, reports %+v, %v", len(ps), r, err)
	}
}

// TestBuiltinOffsetsNeverGuessed: a stripped binary of a release missing
// from the offsets table gets the set skipped with the reason, not guessed.
func TestBuiltinOffsetsNeverGuessed(t *testing.T) {
	b := newest(t, true) // newest, stripped
	bin, err := probes.Open(b.path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	rt, err := bin.Runtime()
	if err != nil {
		t.Fatal(err)
	}
	bin.GoVersion = "go1.99.1" // as if built by a release the table does not know
	ps, reports, err := builtin.Resolve(bin, []string{"http", "sql"}, builtin.Options{}, rt, 0)
	if err != nil {
		t.Fatal(err)
	}
	// http needs struct fields: skipped. sql still applies; only its
	// db.system.name falls back to the driver module.
	if len(reports) != 2 || reports[0].Applied || !strings.Contains(reports[0].Reason, "not in the offsets table") || !reports[1].Applied {
		t.Fatalf("reports %+v", reports)
	}
	for _, p := range ps {
		for _, a := range p.EntryAttrs {
			if strings.HasSuffix(a.Key, "_type") {
				t.Errorf("%s reads %s with unknown offsets", p.Spec.Symbol, a.Key)
			}
		}
	}
	for _, p := range ps {
		if p.Set == "http" {
			t.Errorf("http probe %s compiled with unknown offsets", p.Spec.Symbol)
		}
	}
}

// startPostgres runs a throwaway PostgreSQL cluster (Debian's package) on a
// free loopback port and returns its DSN.
func startPostgres(t *testing.T) string {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		t.Fatal("PostgreSQL is not installed (apt-get install postgresql): scripts/test-setup.sh installs it")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "tcagent-pg-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	os.Chown(dir, uid, gid)
	t.Cleanup(func() { os.RemoveAll(dir) })
	as := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := as("initdb", "-D", data, "-A", "trust", "-U", "postgres"); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	if err := as("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "start",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", port, dir)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as("pg_ctl", "-D", data, "-m", "immediate", "stop") })
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// sqlCase is one statement the SQL fixtures run, and the span it must give.
type sqlCase struct {
	query, name, op string
	code            codes.Code
}

// checkSQLSpans asserts the spans of the SQL fixtures' "sql" command: six
// statements (sanitized), BEGIN and COMMIT, and a query whose span lasts
// until its rows are closed 30ms later.
func checkSQLSpans(t *testing.T, spans []sdktrace.ReadOnlySpan, system, errType string, want []sqlCase, slowQuery string) {
	t.Helper()
	if len(spans) != 8 {
		t.Fatalf("%d spans (%s), want 6 statements, BEGIN and COMMIT", len(spans), spanNames(spans))
	}
	byQuery := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		a := attrs(s)
		if s.SpanKind() != trace.SpanKindClient || a["db.system.name"] != system {
			t.Errorf("%s: kind %v system %v, want client %s", s.Name(), s.SpanKind(), a["db.system.name"], system)
		}
		if r := endReason(s); r != "" {
			t.Errorf("%s ended by the agent: %s", s.Name(), r)
		}
		if s.Name() == "BEGIN" || s.Name() == "COMMIT" {
			if a["db.operation.name"] != s.Name() || s.Status().Code != codes.Unset {
				t.Errorf("%s: %v %v", s.Name(), a, s.Status())
			}
			continue
		}
		byQuery[a["db.query.text"].(string)] = s
	}
	for _, w := range want {
		s := byQuery[w.query]
		if s == nil {
			t.Errorf("no span for %q in %v", w.query, byQuery)
			continue
		}
		a := attrs(s)
		if s.Name() != w.name || (w.op != "" && a["db.operation.name"] != w.op) || s.Status().Code != w.code {
			t.Errorf("%q: name %q op %v status %v", w.query, s.Name(), a["db.operation.name"], s.Status())
		}
		if w.code == codes.Error && (a["error.type"] != errType || !strings.Contains(s.Status().Description, errType)) {
			t.Errorf("failed query: error.type %v status %v, want %s", a["error.type"], s.Status(), errType)
		}
	}
	if s := byQuery[slowQuery]; s != nil {
		if d := s.EndTime().Sub(s.StartTime()); d < 30*time.Millisecond {
			t.Errorf("the query's span lasted %v: it must last until its rows are closed, 30ms later", d)
		}
	}
}

// TestBuiltinSQL traces database/sql against a real PostgreSQL (lib/pq):
// queries last until their rows are closed, exec calls are sync, errors are
// errors, query text is sanitized.
func TestBuiltinSQL(t *testing.T) {
	dsn := startPostgres(t)
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path, "TCAGENT_PG_DSN="+dsn)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"sql"} })
		tg.run(t, "sql")
		checkSQLSpans(t, ss.stop(t), "postgresql", "*pq.Error", []sqlCase{
			{"SELECT ?", "SELECT", "SELECT", codes.Unset}, // SELECT 1, sanitized
			{"CREATE TABLE IF NOT EXISTS items (id int, name text)", "CREATE", "CREATE", codes.Unset},
			{"INSERT INTO items VALUES ($1, $2), ($3, $4)", "INSERT", "INSERT", codes.Unset},
			{"SELECT id, name FROM items ORDER BY id", "SELECT", "SELECT", codes.Unset},
			{"SELEC broken", "postgresql", "", codes.Error},
			{"UPDATE items SET name = $1 WHERE id = $2", "UPDATE", "UPDATE", codes.Unset},
		}, "SELECT id, name FROM items ORDER BY id")
	})
}

// TestBuiltinSQLite does the same against SQLite (modernc.org/sqlite).
func TestBuiltinSQLite(t *testing.T) {
	forEachBuildOf(t, "sqlite", func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"sql"} })
		tg.run(t, "sql")
		checkSQLSpans(t, ss.stop(t), "sqlite", "*sqlite.Error", []sqlCase{
			{"SELECT ?", "SELECT", "SELECT", codes.Unset},
			{"CREATE TABLE IF NOT EXISTS items (id INTEGER, name TEXT)", "CREATE", "CREATE", codes.Unset},
			{"INSERT INTO items VALUES (?, ?), (?, ?)", "INSERT", "INSERT", codes.Unset},
			{"SELECT id, name FROM items ORDER BY id", "SELECT", "SELECT", codes.Unset},
			{"SELEC broken", "sqlite", "", codes.Error},
			{"UPDATE items SET name = ? WHERE id = ?", "UPDATE", "UPDATE", codes.Unset},
		}, "SELECT id, name FROM items ORDER BY id")
	})
}

// TestBuiltinHTTPLoad: 50 concurrent keep-alive clients, 200 requests:
// exactly one server and one client span per request; a slow handler's
// span lasts as long as it.
func TestBuiltinHTTPLoad(t *testing.T) {
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http"} })
		tg.run(t, "httpload")
		spans := ss.stop(t)
		server, client := map[string]int{}, map[string]int{}
		var slow sdktrace.ReadOnlySpan
		for _, s := range spans {
			a := attrs(s)
			switch s.SpanKind() {
			case trace.SpanKindServer:
				server[a["url.path"].(string)]++
				if a["url.path"] == "/slow" {
					slow = s
				}
				if a["url.path"] != "/slow" && (s.Name() != "GET /users/{id}" || a["http.response.status_code"] != int64(200)) {
					t.Errorf("server span %s %v", s.Name(), a)
				}
			case trace.SpanKindClient:
				client[a["url.full"].(string)]++
			}
			if r := endReason(s); r != "" {
				t.Errorf("%s ended by the agent: %s", s.Name(), r)
			}
		}
		if len(server) != 201 || len(client) != 201 {
			t.Fatalf("%d distinct server paths and %d client URLs, want 201 each", len(server), len(client))
		}
		for p, n := range server {
			if n != 1 {
				t.Errorf("%s: %d server spans, want 1", p, n)
			}
		}
		for u, n := range client {
			if n != 1 {
				t.Errorf("%s: %d client spans, want 1", u, n)
			}
		}
		if d := slow.EndTime().Sub(slow.StartTime()); d < 50*time.Millisecond {
			t.Errorf("the slow handler's span lasted %v, want at least 50ms", d)
		}
	})
}

// TestBuiltinNesting: a handler that queries the database and calls another
// service has an sql and a client child; the called route's server span is
// its own trace (no propagation in process yet).
func TestBuiltinNesting(t *testing.T) {
	dsn := startPostgres(t)
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path, "TCAGENT_PG_DSN="+dsn)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http", "sql"} })
		tg.run(t, "composite")
		spans := ss.stop(t)
		var composite, query, call sdktrace.ReadOnlySpan
		for _, s := range spans {
			a := attrs(s)
			switch {
			case s.Name() == "GET /composite":
				composite = s
			case s.Name() == "SELECT":
				query = s
			case s.SpanKind() == trace.SpanKindClient && strings.HasSuffix(fmt.Sprint(a["url.full"]), "/users/7"):
				call = s
			}
		}
		if composite == nil || query == nil || call == nil {
			t.Fatalf("spans %s", spanNames(spans))
		}
		if !isChildOf(query, composite) || !isChildOf(call, composite) {
			t.Errorf("the handler's query and call are not children of its server span")
		}
	})
}

// TestIncomingTraceContext: a request with a valid W3C traceparent continues
// the caller's trace (with its tracestate); an unsampled one is not
// recorded; malformed and oversized ones start new traces and are counted.
// With --propagate the kernel parses the header too, and must agree.
func TestIncomingTraceContext(t *testing.T) {
	forEachBuild(t, func(t *testing.T, b build) {
		t.Run("plain", func(t *testing.T) { testIncomingTraceContext(t, b, false) })
		t.Run("propagate", func(t *testing.T) { testIncomingTraceContext(t, b, true) })
	})
}

func testIncomingTraceContext(t *testing.T, b build, propagate bool) {
	tg := startTarget(t, b.path)
	ss := attachWith(t, tg.pid(), "", func(c *agent.Config) {
		c.Builtin = []string{"http"}
		if propagate {
			c.Propagator = propagator(t, tg.pid())
		}
	})
	tg.run(t, "tracecontext")
	spans := ss.stop(t)
	byPath := map[string]sdktrace.ReadOnlySpan{}
	clientOf := map[string]sdktrace.ReadOnlySpan{} // the fixture's own client spans, by path
	for _, s := range spans {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			byPath[attrs(s)["url.path"].(string)] = s
		case trace.SpanKindClient:
			u := attrs(s)["url.full"].(string)
			clientOf[u[strings.LastIndex(u, "/users/"):]] = s
		}
	}
	if s := byPath["/users/1"]; s == nil {
		t.Error("no span for the request with a sampled traceparent")
	} else {
		if s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
			s.Parent().SpanID().String() != "00f067aa0ba902b7" || !s.Parent().IsRemote() {
			t.Errorf("did not continue the caller's trace: trace %s parent %s", s.SpanContext().TraceID(), s.Parent().SpanID())
		}
		if ts := s.SpanContext().TraceState().String(); ts != "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" {
			t.Errorf("tracestate %q", ts)
		}
	}
	if s := byPath["/users/2"]; s != nil {
		t.Error("a request whose caller did not sample it was recorded")
	}
	for _, p := range []string{"/users/3", "/users/4"} {
		s := byPath[p]
		if s == nil {
			t.Errorf("no span for %s", p)
			continue
		}
		if s.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("%s: a malformed traceparent was trusted", p)
		}
		// Without --propagate the span is a root; with it, the kernel
		// matches it by connection to the fixture's client span that sent
		// the request (the agent traces both ends).
		if c := clientOf[p]; propagate && (c == nil || s.Parent().SpanID() != c.SpanContext().SpanID() ||
			s.SpanContext().TraceID() != c.SpanContext().TraceID()) {
			t.Errorf("%s: parent %s, want the client span that sent it", p, s.Parent().SpanID())
		} else if !propagate && s.Parent().IsValid() {
			t.Errorf("%s: parent %s, want none", p, s.Parent().SpanID())
		}
	}
	if n := ss.s.Stats().InvalidTraceContext; n != 2 {
		t.Errorf("%d invalid trace contexts counted, want 2", n)
	}
	if n, want := ss.s.Stats().Kernel.PropMatched, map[bool]uint64{false: 0, true: 2}[propagate]; n != want {
		t.Errorf("%d server spans matched by connection, want %d", n, want)
	}
	if n := ss.s.Stats().TraceMismatches; n != 0 {
		t.Errorf("%d spans in another trace than the kernel made", n)
	}
}

// TestBuiltinHTTP2 reads the status codes net/http's HTTP/2 server writes,
// and the protocol and scheme of a TLS request.
func TestBuiltinHTTP2(t *testing.T) {
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http"} })
		tg.run(t, "h2")
		spans := ss.stop(t)
		byPath := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range spans {
			if s.SpanKind() == trace.SpanKindServer {
				byPath[attrs(s)["url.path"].(string)] = s
			}
		}
		for path, want := range map[string]int64{"/users/9": 200, "/fail": 500} {
			s := byPath[path]
			if s == nil {
				t.Errorf("no server span for %s in %s", path, spanNames(spans))
				continue
			}
			a := attrs(s)
			if a["http.response.status_code"] != want || a["network.protocol.version"] != "2" || a["url.scheme"] != "https" {
				t.Errorf("%s: status %v protocol %v scheme %v, want %d 2 https", path, a["http.response.status_code"], a["network.protocol.version"], a["url.scheme"], want)
			}
			if (want >= 500) != (s.Status().Code == codes.Error) {
				t.Errorf("%s: span status %v", path, s.Status())
			}
		}
	})
}

// TestGo121 covers the oldest supported release, stripped: runtime offsets
// and built-in offsets from the tables, goroutine lineage, a returned error,
// and the http built-ins (no ServeMux patterns before 1.22; header maps in
// the classic layout).
func TestGo121(t *testing.T) {
	tg := startTarget(t, oldest(t))
	ss := attachWith(t, tg.pid(), `
probes:
  - {symbol: main.Spawn, name: spawn, signature: "func() int"}
  - symbol: main.Work
    name: work
    signature: "func(s string) (int, error)"
    attributes: [{key: s, from: arg0, type: string}]
`, func(c *agent.Config) { c.Builtin = []string{"http"} })
	tg.run(t, "all")
	spans := ss.stop(t)
	var spawn sdktrace.ReadOnlySpan
	works := map[string][]sdktrace.ReadOnlySpan{}
	servers := map[string]sdktrace.ReadOnlySpan{}
	clients := 0
	for _, s := range spans {
		a := attrs(s)
		switch {
		case s.Name() == "spawn":
			spawn = s
		case s.Name() == "work":
			works[a["s"].(string)] = append(works[a["s"].(string)], s)
		case s.SpanKind() == trace.SpanKindServer:
			servers[a["url.path"].(string)] = s
		case s.SpanKind() == trace.SpanKindClient:
			clients++
		}
	}
	if spawn == nil || len(works["child"]) != 2 {
		t.Fatalf("spans %s", spanNames(spans))
	}
	for _, w := range works["child"] {
		if !isChildOf(w, spawn) {
			t.Error("work on a spawned goroutine is not a child of spawn")
		}
	}
	if bad := works["bad"]; len(bad) != 1 || bad[0].Status().Description != "bad input" {
		t.Errorf("returned error: %v", works["bad"])
	}
	for path, status := range map[string]int64{"/hello": 200, "/fail": 500} {
		s := servers[path]
		if s == nil {
			t.Errorf("no server span for %s", path)
			continue
		}
		a := attrs(s)
		if s.Name() != "GET" || a["http.response.status_code"] != status || a["user_agent.original"] != "Go-http-client/1.1" {
			t.Errorf("%s: %s %v", path, s.Name(), a)
		}
		if w := works[path]; len(w) != 1 || !isChildOf(w[0], s) {
			t.Errorf("%s: the handler's work is not the server span's child", path)
		}
	}
	if clients != 2 {
		t.Errorf("%d client spans, want 2", clients)
	}
}

// startRedis runs redis-server (Debian's package) on a free loopback port.
func startRedis(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed (apt-get install redis-server): scripts/test-setup.sh installs it")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "redis-server to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// TestBuiltinRedis traces go-redis v9 against a real redis-server: a span
// per command and per pipeline, redis.Nil not an error, a stopped server's
// error an error. Stripped builds take go-redis's offsets from the table,
// by the exact release in their build info.
func TestBuiltinRedis(t *testing.T) {
	addr := startRedis(t)
	forEachBuildOf(t, "redis", func(t *testing.T, b build) {
		tg := startTarget(t, b.path, "TCAGENT_REDIS_ADDR="+addr)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"redis"} })
		want := map[bool]string{false: "DWARF", true: "table (github.com/redis/go-redis/v9@v9.7.3)"}[b.stripped]
		for f, src := range ss.s.Builtins()[0].Offsets {
			if src != want {
				t.Errorf("offset of %s from %q, want %q", f, src, want)
			}
		}
		tg.run(t, "redis")
		tg.run(t, "down")
		spans := ss.stop(t)
		byText := map[string][]sdktrace.ReadOnlySpan{}
		for _, s := range spans {
			a := attrs(s)
			if s.SpanKind() != trace.SpanKindClient || a["db.system.name"] != "redis" {
				t.Errorf("%s: kind %v system %v", s.Name(), s.SpanKind(), a["db.system.name"])
			}
			byText[fmt.Sprint(a["db.query.text"])] = append(byText[fmt.Sprint(a["db.query.text"])], s)
		}
		one := func(text string) sdktrace.ReadOnlySpan {
			if len(byText[text]) == 0 {
				t.Fatalf("no span %q in %v", text, byText)
			}
			return byText[text][0]
		}
		set := one("SET ? ?")
		if a := attrs(set); set.Name() != "SET" || a["db.operation.name"] != "SET" || a["server.address"] != "127.0.0.1" || set.Status().Code != codes.Unset {
			t.Errorf("SET: %s %v %v", set.Name(), a, set.Status())
		}
		gets := byText["GET ?"]
		if len(gets) != 3 {
			t.Fatalf("%d GET spans, want 3 (a hit, a miss, a stopped server)", len(gets))
		}
		failed := 0
		for _, g := range gets {
			if g.Status().Code == codes.Error {
				failed++
				if attrs(g)["error.type"] != "*net.OpError" {
					t.Errorf("stopped server: error.type %v", attrs(g)["error.type"])
				}
			}
		}
		if failed != 1 {
			t.Errorf("%d GETs failed, want only the one against the stopped server (redis.Nil is no error)", failed)
		}
		if p := one("PIPELINE 3 commands"); p.Name() != "PIPELINE" || p.Status().Code != codes.Unset {
			t.Errorf("pipeline: %s %v", p.Name(), p.Status())
		}
		var multi sdktrace.ReadOnlySpan
		for text, ss := range byText {
			if strings.HasPrefix(text, "MULTI ") {
				multi = ss[0]
			}
		}
		if multi == nil || multi.Name() != "MULTI" {
			t.Errorf("no MULTI span in %v", byText)
		}
	})
}

// TestBuiltinSQLCLI runs the SQLite fixture under `tcagent attach`:
// --sql-query-text full keeps each statement as written and none leaves
// db.query.text out; a rollback that rolls back is a ROLLBACK span, with
// no error, one that does nothing (a deferred Rollback after a commit) is
// none; and db_client_operation_duration_seconds counts each operation.
func TestBuiltinSQLCLI(t *testing.T) {
	b := newestOf(t, "sqlite")
	for _, mode := range []string{"full", "none"} {
		t.Run(mode, func(t *testing.T) {
			tg := startTarget(t, b.path)
			ag := startCLI(t, []int{tg.pid()}, "--builtin", "sql", "--sql-query-text", mode)
			tg.run(t, "sql")
			tg.run(t, "rollback")
			// Statements of "sql" and "rollback", by operation.
			for op, want := range map[string]float64{"SELECT": 2, "CREATE": 1, "INSERT": 1, "UPDATE": 1, "DELETE": 1,
				"BEGIN": 4, "COMMIT": 2, "ROLLBACK": 2} {
				if n := ag.settled(t, want, "db_client_operation_duration_seconds_count", `db_system_name="sqlite"`,
					`db_operation_name="`+op+`"`); n != want {
					t.Errorf("db_client_operation_duration_seconds_count for %s: %v, want %v", op, n, want)
				}
			}
			if n := ag.settled(t, 1, "db_client_operation_duration_seconds_count", `db_operation_name=""`, `error_type="*sqlite.Error"`); n != 1 {
				t.Errorf("db_client_operation_duration_seconds_count of the failed statement: %v, want 1", n)
			}
			spans := ag.stop(t)
			texts := map[string]bool{}
			rollbacks := 0
			for _, s := range spans {
				a := s["attributes"].(map[string]any)
				if q, ok := a["db.query.text"].(string); ok {
					texts[q] = true
				}
				if s["name"] == "ROLLBACK" {
					rollbacks++
					if s["kind"] != "client" || a["db.operation.name"] != "ROLLBACK" || a["db.system.name"] != "sqlite" ||
						s["status"].(map[string]any)["code"] != "unset" || a["error.type"] != nil {
						t.Errorf("ROLLBACK span: %v", s)
					}
				}
			}
			switch mode {
			case "full":
				for _, q := range []string{"SELECT 1", "DELETE FROM items WHERE id = ?", "SELEC broken", "SELECT id, name FROM items ORDER BY id"} {
					if !texts[q] {
						t.Errorf("no span with db.query.text %q, as written: %v", q, texts)
					}
				}
				if texts["SELECT ?"] {
					t.Error("full text was sanitized")
				}
			case "none":
				if len(texts) != 0 {
					t.Errorf("--sql-query-text none: db.query.text %v", texts)
				}
			}
			// The fixture rolls back twice: a direct tx.Rollback(), and
			// awaitDone's rollback of a transaction whose context it
			// cancelled; the `defer tx.Rollback()` after a commit, and
			// awaitDone's after each commit or rollback, do nothing.
			t.Run("ROLLBACK", func(t *testing.T) {
				if rollbacks != 2 {
					t.Errorf("%d ROLLBACK spans, want 2", rollbacks)
				}
			})
		})
	}
}

// TestBuiltinHTTPURLFull: a client request to a URL with credentials and a
// query gets url.full with neither: scheme, host and path only.
func TestBuiltinHTTPURLFull(t *testing.T) {
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http"} })
		tg.run(t, "urlfull")
		spans := ss.stop(t)
		var client, server sdktrace.ReadOnlySpan
		for _, s := range spans {
			switch s.SpanKind() {
			case trace.SpanKindClient:
				client = s
			case trace.SpanKindServer:
				server = s
			}
		}
		if len(spans) != 2 || client == nil || server == nil {
			t.Fatalf("spans %s, want a client and a server span", spanNames(spans))
		}
		port, _ := attrs(server)["server.port"].(int64)
		want := "http://127.0.0.1:" + itoa(port) + "/users/7"
		if got := attrs(client)["url.full"]; got != want {
			t.Errorf("url.full %q, want %q (no credentials, no query)", got, want)
		}
		for k, v := range attrs(client) {
			if s := fmt.Sprint(v); strings.Contains(s, "s3cret") || strings.Contains(s, "alice") || strings.Contains(s, "token") {
				t.Errorf("client span attribute %s = %q carries the credentials or the query", k, s)
			}
		}
		if got := attrs(server)["url.path"]; got != "/users/7" {
			t.Errorf("server url.path %q, want /users/7", got)
		}
	})
}

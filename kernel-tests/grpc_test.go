package kerneltests

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// grpcBuild is a gRPC fixture build and the grpc release it links.
type grpcBuild struct {
	build
	grpc string
}

// grpcFixtures builds (once) the gRPC fixture against grpc releases of each
// internal layout the set reads: v1.68.0 (go.mod: a *transport.Stream per
// server RPC) with Go 1.22; v1.70.0 (go.v170.mod: a ServerStream embedding
// *Stream, the newest release Go 1.22 builds) with Go 1.22 and 1.26; v1.85.0
// (go.v185.mod: Stream embedded by value, client streams wrapped) with Go
// 1.26 and 1.27. Each normal and stripped, and v1.85.0 a stripped PIE too.
func grpcFixtures(t *testing.T) []grpcBuild {
	t.Helper()
	buildsMu.Lock()
	defer buildsMu.Unlock()
	src, _ := filepath.Abs("testdata/grpc")
	var out []grpcBuild
	for _, c := range []struct{ release, toolchain, grpc, modfile string }{
		{"go1.22", "go1.22.12", "v1.68.0", "go.mod"},
		{"go1.22", "go1.22.12", "v1.70.0", "go.v170.mod"},
		{"go1.26", "local", "v1.70.0", "go.v170.mod"},
		{"go1.26", "local", "v1.85.0", "go.v185.mod"},
		{"go1.27", "go1.27.3", "v1.85.0", "go.v185.mod"},
	} {
		for _, v := range variants {
			// A stripped PIE of the newest grpc only: not one per
			// layout.
			if v.pie && c.grpc != "v1.85.0" {
				continue
			}
			b := build{name: c.release + "-grpc" + c.grpc + v.suffix, release: c.release, stripped: v.stripped, pie: v.pie}
			b.path = filepath.Join(workDir, "grpc-"+b.name)
			buildOnce(t, src, b.path, c.toolchain, append([]string{"-modfile=" + c.modfile}, v.args...)...)
			out = append(out, grpcBuild{b, c.grpc})
		}
	}
	return out
}

// TestBuiltinGRPC: unary OK, unary NotFound, a server stream of 5 messages
// over 100 ms, a deadline exceeded and an unknown method (UNIMPLEMENTED, the
// server's failure), client and server spans, for each
// Go × grpc × stripped build.
func TestBuiltinGRPC(t *testing.T) {
	for _, b := range grpcFixtures(t) {
		t.Run(b.name, func(t *testing.T) {
			tg := startTarget(t, b.path)
			ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"grpc"} })
			r := ss.s.Builtins()[0]
			if !r.Applied || r.Reason != "" {
				t.Fatalf("grpc set: applied %v, %q", r.Applied, r.Reason)
			}
			for f, src := range r.Offsets {
				want := "DWARF"
				if b.stripped {
					want = "table ("
				}
				if !strings.HasPrefix(src, want) {
					t.Errorf("offset of %s from %q, want %s", f, src, want)
				}
			}
			for _, cmd := range []string{"check", "notfound", "watch", "deadline", "unimplemented"} {
				tg.run(t, cmd)
			}
			// stop detaches and drains what the ring buffer holds.
			spans := ss.stop(t)
			var clients, servers []sdktrace.ReadOnlySpan
			for _, s := range spans {
				a := attrs(s)
				if a["rpc.system"] != "grpc" || a["rpc.service"] != "grpc.health.v1.Health" || a["server.address"] != "127.0.0.1" {
					t.Errorf("%s: attributes %v", s.Name(), a)
				}
				if s.Name() != "grpc.health.v1.Health/"+a["rpc.method"].(string) {
					t.Errorf("span %q for method %v", s.Name(), a["rpc.method"])
				}
				switch s.SpanKind() {
				case trace.SpanKindClient:
					clients = append(clients, s)
				case trace.SpanKindServer:
					servers = append(servers, s)
				default:
					t.Errorf("%s: kind %v", s.Name(), s.SpanKind())
				}
			}
			byStart(servers)
			if len(clients) != 5 || len(servers) != 5 {
				t.Fatalf("%d client and %d server spans, want 5 each: %s", len(clients), len(servers), spanNames(spans))
			}
			port := attrs(servers[0])["server.port"]
			for _, s := range spans {
				if p := attrs(s)["server.port"]; p != port || p.(int64) <= 0 {
					t.Errorf("%s: server.port %v, want the server's %v", s.Name(), p, port)
				}
			}
			// Client spans, in call order: every non-OK code is an error.
			// The stream's lower bound is the fixture's: its server sends 5
			// messages 20 ms apart, so no machine makes it shorter.
			for i, want := range []struct {
				method string
				code   int64
				errTyp string
				min    time.Duration
			}{
				{"Check", 0, "", 0},
				{"Check", 5, "NOT_FOUND", 0},
				{"Watch", 0, "", 100 * time.Millisecond},
				{"Check", 4, "DEADLINE_EXCEEDED", 0},
				{"Nope", 12, "UNIMPLEMENTED", 0},
			} {
				s := clients[i]
				a := attrs(s)
				d := s.EndTime().Sub(s.StartTime())
				if a["rpc.method"] != want.method || a["rpc.grpc.status_code"] != want.code || d < want.min {
					t.Errorf("client %d: %s code %v lasted %v, want %s code %d, at least %v", i, a["rpc.method"], a["rpc.grpc.status_code"], d, want.method, want.code, want.min)
				}
				if _, ended := a["tcagent.end_reason"]; ended {
					t.Errorf("client %d ended by the agent: %v", i, a["tcagent.end_reason"])
				}
				wantStatus := codes.Unset
				if want.code != 0 {
					wantStatus = codes.Error
				}
				if s.Status().Code != wantStatus || !errorType(a, want.errTyp) {
					t.Errorf("client %d: status %v, error.type %v, want %q", i, s.Status(), a["error.type"], want.errTyp)
				}
			}
			// The call that hit its deadline lasted while the server worked
			// on it (an order of events, not a duration).
			if clients[3].EndTime().Before(servers[3].StartTime()) {
				t.Errorf("the deadline call's client span ended %v before its server span began", servers[3].StartTime().Sub(clients[3].EndTime()))
			}
			// Server spans end when the handler's status is written: NotFound
			// is the caller's failure, not the server's. The deadline reaches
			// the server as the client's cancellation or its own deadline.
			for i, s := range servers {
				a := attrs(s)
				code, _ := a["rpc.grpc.status_code"].(int64)
				d := s.EndTime().Sub(s.StartTime())
				if _, ended := a["tcagent.end_reason"]; ended {
					t.Errorf("server %d ended by the agent: %v", i, a["tcagent.end_reason"])
				}
				switch i {
				case 0, 1:
					if code != []int64{0, 5}[i] || s.Status().Code != codes.Unset || !errorType(a, "") {
						t.Errorf("server %d: code %d, status %v, error.type %v", i, code, s.Status(), a["error.type"])
					}
				case 2:
					if a["rpc.method"] != "Watch" || code != 0 || d < 100*time.Millisecond || !errorType(a, "") {
						t.Errorf("server stream: %v code %d lasted %v, error.type %v", a["rpc.method"], code, d, a["error.type"])
					}
				case 3:
					// DEADLINE_EXCEEDED is the server's failure, with its
					// name as error.type; CANCELLED (the client gave up
					// first) is not.
					want := map[int64]string{1: "", 4: "DEADLINE_EXCEEDED"}
					wt, known := want[code]
					if !known || (code == 4) != (s.Status().Code == codes.Error) || !errorType(a, wt) {
						t.Errorf("server deadline: code %d, status %v, error.type %v", code, s.Status(), a["error.type"])
					}
				case 4:
					if a["rpc.method"] != "Nope" || code != 12 || s.Status().Code != codes.Error || !errorType(a, "UNIMPLEMENTED") {
						t.Errorf("server of an unknown method: %v code %d, status %v, error.type %v; want Nope, 12, error, UNIMPLEMENTED",
							a["rpc.method"], code, s.Status(), a["error.type"])
					}
				}
			}
		})
	}
}

// errorType reports whether a span's error.type is want, or absent when want
// is "".
func errorType(a map[string]any, want string) bool {
	if want == "" {
		_, present := a["error.type"]
		return !present
	}
	return a["error.type"] == want
}

// TestGRPCWithoutStatusLayout: a stripped binary whose genproto release the
// table does not know keeps its gRPC spans, without codes, and says so; an
// unknown grpc release skips the set.
func TestGRPCWithoutStatusLayout(t *testing.T) {
	var path string
	for _, b := range grpcFixtures(t) {
		if b.stripped {
			path = b.path
			break
		}
	}
	for _, c := range []struct {
		module  string
		applied bool
		reason  string
	}{
		{"google.golang.org/genproto/googleapis/rpc", true, "no gRPC status codes"},
		{"google.golang.org/grpc", false, "google.golang.org/grpc@v1.99.0 is not in the offsets table"},
	} {
		bin, err := probes.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range bin.Modules {
			if m.Path == c.module {
				bin.Modules[i].Version = "v1.99.0"
			}
		}
		rt, _ := bin.Runtime()
		ps, r, err := builtin.Resolve(bin, []string{"grpc"}, builtin.Options{}, rt, 0)
		bin.Close()
		if err != nil || len(r) != 1 || r[0].Applied != c.applied || !strings.Contains(r[0].Reason, c.reason) || c.applied != (len(ps) > 0) {
			t.Errorf("%s unknown: %d probes, report %+v, %v", c.module, len(ps), r, err)
		}
	}
}

// TestGRPCIncomingTraceContext: an RPC whose metadata carries a valid W3C
// traceparent continues the caller's trace on its server span; a malformed
// one starts a new trace and is counted.
func TestGRPCIncomingTraceContext(t *testing.T) {
	for _, b := range grpcFixtures(t) {
		t.Run(b.name, func(t *testing.T) {
			tg := startTarget(t, b.path)
			ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"grpc"} })
			tg.run(t, "traced")
			tg.run(t, "tracedbad")
			tg.run(t, "check")
			spans := ss.stop(t)
			var servers []sdktrace.ReadOnlySpan
			for _, s := range spans {
				if s.SpanKind() == trace.SpanKindServer {
					servers = append(servers, s)
				}
			}
			if len(servers) != 3 {
				t.Fatalf("%d server spans, want 3: %s", len(servers), spanNames(spans))
			}
			byStart(servers)
			if s := servers[0]; s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
				s.Parent().SpanID().String() != "00f067aa0ba902b7" || !s.Parent().IsRemote() {
				t.Errorf("did not continue the caller's trace: trace %s parent %s", s.SpanContext().TraceID(), s.Parent().SpanID())
			}
			for _, s := range servers[1:] {
				if s.Parent().IsValid() || s.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" {
					t.Errorf("a server span without valid trace context has parent %v in trace %s", s.Parent().SpanID(), s.SpanContext().TraceID())
				}
			}
			if n := ss.s.Stats().InvalidTraceContext; n != 1 {
				t.Errorf("%d invalid trace contexts counted, want 1", n)
			}
		})
	}
}

// byStart orders server spans by their start, which is the order of the
// calls (each starts after the caller saw the one before end): a server
// span ends when handleStream returns, after the status reached the
// client, so the ends of two calls in a row may come in either order.
func byStart(spans []sdktrace.ReadOnlySpan) {
	slices.SortStableFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
}

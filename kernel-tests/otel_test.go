package kerneltests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/bpf"
)

// programSpan is a span the fixture's own OpenTelemetry SDK ended.
type programSpan struct{ name, trace, span, parent string }

func programSpans(t *testing.T, file string) []programSpan {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []programSpan
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(line); len(f) == 4 {
			out = append(out, programSpan{f[0], f[1], f[2], f[3]})
		}
	}
	return out
}

// TestJoinProgramTraces: a service that makes spans with an OpenTelemetry
// SDK of its own, from a request that brought no trace context: tcagent's
// server span, and the client span under it, end up in the trace of the
// program's span for that request, each keeping its own parent. Without
// --propagate the service it calls (itself) keeps a trace of its own, the
// program having made no span there; with --propagate the request carries
// the program's trace, and its server span continues it.
func TestJoinProgramTraces(t *testing.T) {
	forEachBuildOf(t, "otelsdk", func(t *testing.T, b build) {
		t.Run("plain", func(t *testing.T) { testJoin(t, b, false) })
		t.Run("propagate", func(t *testing.T) { testJoin(t, b, true) })
	})
}

func testJoin(t *testing.T, b build, propagate bool) {
	file := filepath.Join(t.TempDir(), "spans")
	tg := startTarget(t, b.path, "SPANS="+file)
	ss := attachWith(t, tg.pid(), "", func(c *agent.Config) {
		c.Builtin = []string{"http", "otel"}
		if propagate {
			c.Propagator = propagator(t, tg.pid())
		}
	})
	for _, r := range ss.s.Builtins() {
		if !r.Applied || r.Reason != "" {
			t.Fatalf("%s set: applied %v, %q", r.Set, r.Applied, r.Reason)
		}
	}
	tg.run(t, "call")
	spans := ss.stop(t) // detaches and drains the ring buffer
	prog := programSpans(t, file)
	if len(prog) != 1 || prog[0].name != "order" || prog[0].parent != "-" {
		t.Fatalf("the program's spans: %v, want its root span order", prog)
	}
	order := prog[0]
	var orderServer, stockServer, stockClient sdktrace.ReadOnlySpan
	for _, s := range spans {
		a := attrs(s)
		switch {
		case s.SpanKind() == trace.SpanKindServer && a["url.path"] == "/order":
			orderServer = s
		case s.SpanKind() == trace.SpanKindServer && a["url.path"] == "/stock":
			stockServer = s
		case s.SpanKind() == trace.SpanKindClient:
			stockClient = s
		}
	}
	if len(spans) != 3 || orderServer == nil || stockServer == nil || stockClient == nil {
		t.Fatalf("spans: %s", spanNames(spans))
	}
	if got := orderServer.SpanContext().TraceID().String(); got != order.trace {
		t.Errorf("the server span is in trace %s, the program's span in %s", got, order.trace)
	}
	if got := stockClient.SpanContext().TraceID().String(); got != order.trace || stockClient.Parent().SpanID() != orderServer.SpanContext().SpanID() ||
		stockClient.Parent().TraceID().String() != order.trace {
		t.Errorf("the client span: trace %s parent %s/%s; want trace %s, parent the server span %s", got,
			stockClient.Parent().TraceID(), stockClient.Parent().SpanID(), order.trace, orderServer.SpanContext().SpanID())
	}
	if orderServer.Parent().IsValid() {
		t.Errorf("the server span got a parent: %v", orderServer.Parent())
	}
	stock := stockServer.SpanContext().TraceID().String()
	if propagate && (stock != order.trace || stockServer.Parent().SpanID() != stockClient.SpanContext().SpanID()) {
		t.Errorf("with --propagate the called service's span is in trace %s, parent %s; want the program's trace %s, parent the client span %s",
			stock, stockServer.Parent().SpanID(), order.trace, stockClient.SpanContext().SpanID())
	}
	if !propagate && stock == order.trace {
		t.Error("without --propagate the called service's span joined the program's trace, though the program made no span there")
	}
	if n := ss.s.Stats().TracesJoined; n != 1 {
		t.Errorf("%d traces joined, want 1", n)
	}
	if n := ss.s.Stats().TraceMismatches; n != 0 {
		t.Errorf("%d trace mismatches", n)
	}
}

// propagator loads --propagate's socket programs on pid's cgroup for the
// test.
func propagator(t *testing.T, pid int) *bpf.Propagator {
	t.Helper()
	cg, err := bpf.CgroupOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	p, err := bpf.LoadPropagator(cg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

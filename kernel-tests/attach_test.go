package kerneltests

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/binder"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/probes"
)

func TestCapturedTypes(t *testing.T) {
	const yaml = `
probes:
  - symbol: main.Types
    name: types
    signature: "func(i int, u uint, b bool, s string, small int8) (int, string)"
    attributes:
      - {key: i, from: arg0, type: int}
      - {key: u, from: arg1, type: uint}
      - {key: b, from: arg2, type: bool}
      - {key: s, from: arg3, type: string}
      - {key: small, from: arg4, type: int}
      - {key: r0, from: result0, type: int}
      - {key: r1, from: result1, type: string}
`
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attach(t, tg.pid(), yaml)
		tg.run(t, "types")
		spans := ss.stop(t)
		if len(spans) != 2 {
			t.Fatalf("got %d spans (%s), want 2", len(spans), spanNames(spans))
		}
		a := attrs(spans[0])
		want := map[string]any{"i": int64(-42), "u": int64(42), "b": true, "s": "hello", "small": int64(-7), "r0": int64(-84), "r1": "hello!"}
		for k, v := range want {
			if a[k] != v {
				t.Errorf("first call: %s = %#v, want %#v", k, a[k], v)
			}
		}
		long := attrs(spans[1])
		s, _ := long["s"].(string)
		if s != strings.Repeat("x", probes.DefaultMaxString)+probes.TruncatedSuffix {
			t.Errorf("300-byte string captured as %d bytes %q..., want %d bytes and the truncation mark", len(s), s[:min(len(s), 10)], probes.DefaultMaxString)
		}
		if long["b"] != false || long["small"] != int64(100) {
			t.Errorf("second call: b=%v small=%v", long["b"], long["small"])
		}
		for _, sp := range spans {
			if sp.Status().Code != codes.Unset {
				t.Errorf("%s: status %v, want unset", sp.Name(), sp.Status())
			}
		}
	})
}

func TestReturnedErrors(t *testing.T) {
	for _, capture := range []bool{false, true} {
		yaml := fmt.Sprintf(`
probes:
  - symbol: main.Fail
    name: fail
    capture_error: %v
    signature: "func(mode int) (int, error)"
    attributes:
      - {key: mode, from: arg0, type: int}
`, capture)
		t.Run(fmt.Sprintf("capture_error=%v", capture), func(t *testing.T) {
			forEachBuild(t, func(t *testing.T, b build) {
				tg := startTarget(t, b.path)
				ss := attach(t, tg.pid(), yaml)
				tg.run(t, "errors")
				spans := ss.stop(t)
				if len(spans) != 4 {
					t.Fatalf("got %d spans, want 4", len(spans))
				}
				want := []struct {
					code     codes.Code
					msg, typ string
				}{
					{codes.Error, "plain failure", "*errors.errorString"},
					{codes.Error, "wrapped: base failure", "*fmt.wrapError"},
					{codes.Unset, "", ""},
					// Not one of the common types: the type stands for the message.
					{codes.Error, "*main.codeError", "*main.codeError"},
				}
				for i, w := range want {
					sp := spans[i]
					if got := attrs(sp)["mode"]; got != int64(i) {
						t.Fatalf("span %d has mode %v", i, got)
					}
					if sp.Status().Code != w.code || sp.Status().Description != w.msg {
						t.Errorf("mode %d: status %v %q, want %v %q", i, sp.Status().Code, sp.Status().Description, w.code, w.msg)
					}
					var ex []string
					for _, e := range sp.Events() {
						if e.Name == "exception" {
							m := map[string]string{}
							for _, a := range e.Attributes {
								m[string(a.Key)] = a.Value.Emit()
							}
							ex = append(ex, m["exception.type"]+": "+m["exception.message"])
						}
					}
					wantEx := 0
					if capture && w.code == codes.Error {
						wantEx = 1
					}
					if len(ex) != wantEx {
						t.Errorf("mode %d: %d exception events %v, want %d", i, len(ex), ex, wantEx)
					} else if wantEx == 1 && ex[0] != w.typ+": "+w.msg {
						t.Errorf("mode %d: exception %q, want %q", i, ex[0], w.typ+": "+w.msg)
					}
				}
			})
		})
	}
}

const nestedYAML = `
probes:
  - {symbol: main.Outer, name: outer, signature: "func(n int) int"}
  - {symbol: main.Middle, name: middle, signature: "func(n int) int"}
  - {symbol: main.Inner, name: inner, signature: "func(n int) int"}
`

func TestNestedCalls(t *testing.T) {
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attach(t, tg.pid(), nestedYAML)
		tg.run(t, "nested")
		spans := ss.stop(t)
		if got := spanNames(spans); got != "inner,middle,outer" {
			t.Fatalf("ended spans %s, want inner,middle,outer", got)
		}
		inner, middle, outer := spans[0], spans[1], spans[2]
		if outer.Parent().IsValid() {
			t.Error("outer has a parent")
		}
		if middle.Parent().SpanID() != outer.SpanContext().SpanID() || inner.Parent().SpanID() != middle.SpanContext().SpanID() {
			t.Error("nesting is wrong: want outer > middle > inner")
		}
		if inner.SpanContext().TraceID() != outer.SpanContext().TraceID() {
			t.Error("nested spans in different traces")
		}
		if inner.StartTime().Before(middle.StartTime()) || inner.EndTime().After(middle.EndTime()) ||
			middle.StartTime().Before(outer.StartTime()) || middle.EndTime().After(outer.EndTime()) {
			t.Error("child spans are not within their parents' time")
		}
	})
}

func TestRecursion(t *testing.T) {
	const yaml = `
probes:
  - symbol: main.Recurse
    name: recurse
    signature: "func(n int) int"
    attributes:
      - {key: n, from: arg0, type: int}
      - {key: r, from: result0, type: int}
`
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attach(t, tg.pid(), yaml)
		tg.run(t, "recurse")
		spans := ss.stop(t)
		if len(spans) != 50 {
			t.Fatalf("got %d spans, want 50", len(spans))
		}
		byN := map[int64]sdktrace.ReadOnlySpan{}
		for _, s := range spans {
			a := attrs(s)
			n := a["n"].(int64)
			byN[n] = s
			if a["r"] != n {
				t.Errorf("Recurse(%d) returned %v, want %d", n, a["r"], n)
			}
		}
		for n := int64(1); n <= 50; n++ {
			s := byN[n]
			if s == nil {
				t.Fatalf("no span for Recurse(%d)", n)
			}
			if n == 50 {
				if s.Parent().IsValid() {
					t.Error("Recurse(50) has a parent")
				}
				continue
			}
			if s.Parent().SpanID() != byN[n+1].SpanContext().SpanID() {
				t.Errorf("Recurse(%d) is not a child of Recurse(%d)", n, n+1)
			}
		}
	})
}

func TestConcurrentGoroutines(t *testing.T) {
	const yaml = `
probes:
  - symbol: main.Worker
    name: worker
    signature: "func(id int) int"
    attributes: [{key: id, from: arg0, type: int}]
  - symbol: main.Leaf
    name: leaf
    signature: "func(id int) int"
    attributes: [{key: id, from: arg0, type: int}]
`
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attach(t, tg.pid(), yaml)
		tg.run(t, "concurrent")
		spans := ss.stop(t)
		workers := map[int64]sdktrace.ReadOnlySpan{}
		for _, s := range named(spans, "worker") {
			workers[attrs(s)["id"].(int64)] = s
			if s.Parent().IsValid() {
				t.Errorf("worker %v has a parent", attrs(s)["id"])
			}
		}
		leaves := named(spans, "leaf")
		if len(workers) != 200 || len(leaves) != 200 {
			t.Fatalf("got %d workers and %d leaves, want 200 each", len(workers), len(leaves))
		}
		for _, l := range leaves {
			id := attrs(l)["id"].(int64)
			w := workers[id]
			if l.Parent().SpanID() != w.SpanContext().SpanID() || l.SpanContext().TraceID() != w.SpanContext().TraceID() {
				t.Errorf("leaf %d is not the child of worker %d", id, id)
			}
		}
	})
}

func TestStackGrowthOnEntry(t *testing.T) {
	const yaml = `
probes:
  - symbol: main.Grow
    name: grow
    signature: "func(n int) int"
    attributes: [{key: n, from: arg0, type: int}]
`
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attach(t, tg.pid(), yaml)
		tg.run(t, "grow")
		spans := ss.stop(t)
		if len(spans) != 20 {
			t.Fatalf("got %d spans for 20 calls that grow the stack on entry", len(spans))
		}
		seen := map[int64]bool{}
		for _, s := range spans {
			n := attrs(s)["n"].(int64)
			if seen[n] {
				t.Errorf("two spans for Grow(%d)", n)
			}
			seen[n] = true
			if r := s.Attributes(); len(r) == 0 {
				t.Error("span without attributes")
			}
			for _, a := range s.Attributes() {
				if a.Key == binder.EndReasonKey {
					t.Errorf("Grow(%d) ended by the agent (%s), not by its return", n, a.Value.Emit())
				}
			}
		}
		st := ss.s.Stats()
		if st.Lifecycle.LostEnds != 0 || st.Lifecycle.UnmatchedEnds != 0 {
			t.Errorf("lifecycle lost track: %+v", st.Lifecycle)
		}
		// arm64's entry probe is on the stack check's branch: each call's
		// first run of the prologue takes it to morestack, and the program
		// drops that hit.
		if runtime.GOARCH == "arm64" && st.Kernel.Dedup < 20 {
			t.Errorf("%d hits on a stack check taken to morestack dropped, want one for each of 20 calls at least", st.Kernel.Dedup)
		}
	})
}

func TestSpanFalseEnrichesEnclosingSpan(t *testing.T) {
	const yaml = `
probes:
  - symbol: main.Handle
    name: handle
    signature: "func(key string) int"
  - symbol: main.Enrich
    span: false
    signature: "func(key string, n int) bool"
    attributes:
      - {key: enrich.key, from: arg0, type: string}
      - {key: enrich.n, from: arg1, type: int}
      - {key: enrich.result, from: result0, type: bool}
`
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attach(t, tg.pid(), yaml)
		tg.run(t, "enrich")
		spans := ss.stop(t)
		if len(spans) != 1 || spans[0].Name() != "handle" {
			t.Fatalf("got spans %s, want only handle", spanNames(spans))
		}
		a := attrs(spans[0])
		if a["enrich.key"] != "a-long-key" || a["enrich.n"] != int64(5) || a["enrich.result"] != true {
			t.Errorf("handle's attributes %v lack Enrich's captures", a)
		}
	})
}

func TestTargetExitsWhileAttached(t *testing.T) {
	const yaml = `
probes:
  - {symbol: main.Block, name: block, signature: "func(d int64) int"}
`
	forEachBuild(t, func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attach(t, tg.pid(), yaml)
		fmt.Fprintln(tg.stdin, "exit")
		tg.cmd.Wait()
		select {
		case err := <-ss.done:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("agent did not notice the exit within 10s")
		}
		ss.cancel = nil
		if err := ss.s.Close(); err != nil {
			t.Fatal(err)
		}
		spans := ss.rec.Ended()
		if len(spans) != 1 {
			t.Fatalf("got %d spans, want the one open call", len(spans))
		}
		if r := attrs(spans[0])[string(binder.EndReasonKey)]; r != lifecycle.EndExit {
			t.Errorf("end reason %v, want %s", r, lifecycle.EndExit)
		}
	})
}

// TestRuntimeOffsetsTable checks the committed goid table against the DWARF of
// the builds, so that stripped binaries get the offset DWARF would give.
func TestRuntimeOffsetsTable(t *testing.T) {
	for _, b := range fixtures(t) {
		// Each build with DWARF against its stripped twin (b.path +
		// "-stripped"): the stripped and PIE builds have no DWARF of their
		// own to compare with, and the PIE's table entry is the stripped
		// one's (the same release).
		if b.stripped || b.pie {
			continue
		}
		bin, err := probes.Open(b.path)
		if err != nil {
			t.Fatal(err)
		}
		fromDWARF, err := bin.Runtime()
		bin.Close()
		if err != nil || fromDWARF.Source != "DWARF" {
			t.Fatalf("%s: runtime offsets not from DWARF: %+v %v", b.name, fromDWARF, err)
		}
		sbin, err := probes.Open(b.path + "-stripped")
		if err != nil {
			t.Fatal(err)
		}
		fromTable, err := sbin.Runtime()
		sbin.Close()
		if err != nil || fromTable.Source != "table" || fromTable.GoidOffset != fromDWARF.GoidOffset {
			t.Errorf("%s: table gives %+v (%v), DWARF %+v", b.name, fromTable, err, fromDWARF)
		}
	}
}

// TestDetachLeavesNoGoroutine: detaching from a process that keeps running
// releases everything the session started, its exit watcher included.
func TestDetachLeavesNoGoroutine(t *testing.T) {
	tg := startTarget(t, newest(t, false).path)
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		// Each cycle once with uprobe_multi (where the kernel has it) and
		// once through single links: neither leaves a link behind.
		ss := attachWith(t, tg.pid(), nestedYAML, func(c *agent.Config) { c.SingleUprobes = i%2 == 1 })
		progs := programIDs(t, ss.s)
		if n := linksTo(t, progs); n == 0 {
			t.Fatalf("cycle %d: no link attached to the session's %d programs", i, len(progs))
		}
		tg.run(t, "nested")
		ss.stop(t)
		if n := linksTo(t, progs); n != 0 {
			t.Errorf("cycle %d (%s): %d links left after detaching", i, ss.s.AttachMode(), n)
		}
	}
	// A goroutine that has been told to stop may take a moment to return:
	// wait for the count to come back, failing only if it never does.
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines before three attach/detach cycles, %d after (waited 30s)", before, after)
	}
	tg.run(t, "nested") // the target is fine
}

// TestSingleUprobeFallback runs attach, spans and detach through the path
// kernels without uprobe_multi take (one uprobe link per offset), forced on
// this kernel: the same spans, every offset attached, and a target that
// runs on after the detach.
func TestSingleUprobeFallback(t *testing.T) {
	// The newest Go's builds (normal, stripped, stripped PIE): single links
	// are slow to detach (about 90 ms each), and the path does not depend on
	// the release.
	for _, b := range fixtures(t) {
		if b.release != toolchains[len(toolchains)-1].release {
			continue
		}
		t.Run(b.name, func(t *testing.T) { testSingleUprobes(t, b) })
	}
}

func testSingleUprobes(t *testing.T, b build) {
	tg := startTarget(t, b.path)
	// The default takes uprobe_multi where the kernel has it (6.6 on) and
	// falls back to one link per offset where it has not (Debian 12's 6.1,
	// under scripts/test-vm.sh).
	want := "uprobe_multi"
	if features.HaveBPFLinkUprobeMulti() != nil {
		want = "uprobe"
	}
	multi := attach(t, tg.pid(), nestedYAML)
	if m := multi.s.AttachMode(); m != want {
		t.Fatalf("attach mode %q by default, want %s on this kernel", m, want)
	}
	wantUprobes := multi.s.Stats().Uprobes
	multi.stop(t)
	ss := attachWith(t, tg.pid(), nestedYAML, func(c *agent.Config) { c.SingleUprobes = true })
	if m := ss.s.AttachMode(); m != "uprobe" {
		t.Fatalf("attach mode %q, want uprobe (one link per offset)", m)
	}
	if n := ss.s.Stats().Uprobes; n != wantUprobes || n == 0 {
		t.Errorf("%d uprobes attached one by one, %d with uprobe_multi", n, wantUprobes)
	}
	tg.run(t, "nested")
	spans := ss.stop(t)
	outer, middle, inner := named(spans, "outer"), named(spans, "middle"), named(spans, "inner")
	if len(spans) != 3 || len(outer) != 1 || len(middle) != 1 || len(inner) != 1 {
		t.Fatalf("spans %s, want outer, middle, inner", spanNames(spans))
	}
	if middle[0].Parent().SpanID() != outer[0].SpanContext().SpanID() || inner[0].Parent().SpanID() != middle[0].SpanContext().SpanID() {
		t.Error("nested calls misparented through single uprobes")
	}
	if endReason(inner[0]) != "" || endReason(outer[0]) != "" {
		t.Errorf("ended by the agent: %q, %q", endReason(outer[0]), endReason(inner[0]))
	}
	// Detached: the target runs on, and a new session sees only its
	// own calls.
	tg.run(t, "nested")
	again := attach(t, tg.pid(), nestedYAML)
	tg.run(t, "nested")
	if n := len(again.stop(t)); n != 3 {
		t.Errorf("%d spans after re-attaching, want 3: the single links were not all detached", n)
	}
}

func programIDs(t *testing.T, s *agent.Session) map[ebpf.ProgramID]bool {
	t.Helper()
	ids := map[ebpf.ProgramID]bool{}
	for _, p := range s.Programs() {
		info, err := p.Info()
		if err != nil {
			t.Fatalf("program info: %v", err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatal("program info has no id")
		}
		ids[id] = true
	}
	return ids
}

// linksTo counts the links in the kernel, of any type, that run one of
// progs: the count works on kernels whose link info says nothing of a
// uprobe's file (before 6.6).
func linksTo(t *testing.T, progs map[ebpf.ProgramID]bool) int {
	t.Helper()
	n := 0
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		if info, err := l.Info(); err == nil && progs[info.Program] {
			n++
		}
		l.Close()
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate links: %v", err)
	}
	return n
}

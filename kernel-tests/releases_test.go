package kerneltests

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// unknownRelease is the release the simulated builds claim: one this agent
// has never heard of.
const unknownRelease = "go1.28.0"

// unknownBuilds returns the main fixture's go1.27 stripped and stripped PIE
// builds with every "go1.27.3" in the file rewritten to "go1.28.0" (same
// length, so nothing moves): to the agent, a stripped binary of a release
// newer than its tables, whose runtime.g offsets can only come from the
// runtime's machine code.
func unknownBuilds(t *testing.T) []build {
	t.Helper()
	return renamed(t, true)
}

// renamed returns the go1.27 builds, stripped or not, renamed go1.28.0.
func renamed(t *testing.T, stripped bool) []build {
	t.Helper()
	var out []build
	for _, b := range fixtures(t) {
		if b.release != "go1.27" || b.stripped != stripped {
			continue
		}
		data, err := os.ReadFile(b.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("go1.27.3")) {
			t.Fatalf("%s does not say go1.27.3", b.path)
		}
		u := b
		u.name = strings.Replace(b.name, "go1.27", "go1.28-simulated", 1)
		u.release = "go1.28"
		u.path = b.path + "-as-go1.28"
		out = append(out, u)
		if _, err := os.Stat(u.path); err == nil {
			continue // written by an earlier test
		}
		if err := os.WriteFile(u.path, bytes.ReplaceAll(data, []byte("go1.27.3"), []byte(unknownRelease)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if want := map[bool]int{false: 1, true: 2}[stripped]; len(out) != want {
		t.Fatalf("%d go1.27 builds (stripped %v), want %d", len(out), stripped, want)
	}
	return out
}

// TestUnknownReleaseWithDWARF: a binary with DWARF gets every offset from
// it whatever release it says built it: the built-in http set applies to
// the go1.27 build renamed go1.28.0, from DWARF alone, and traces its
// requests.
func TestUnknownReleaseWithDWARF(t *testing.T) {
	u := renamed(t, false)[0]
	tg := startTarget(t, u.path)
	ss := attachWith(t, tg.pid(), nestedYAML, func(c *agent.Config) { c.Builtin = []string{"http", "sql"} })
	for _, r := range ss.s.Builtins() {
		if !r.Applied || r.Reason != "" || len(r.Offsets) == 0 {
			t.Errorf("%s set: applied %v, %q, offsets %v", r.Set, r.Applied, r.Reason, r.Offsets)
		}
		for f, src := range r.Offsets {
			if src != "DWARF" {
				t.Errorf("%s: offset of %s from %q, want DWARF", r.Set, f, src)
			}
		}
	}
	tg.run(t, "http")
	tg.run(t, "nested")
	spans := ss.stop(t)
	var users, fails sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() != trace.SpanKindServer {
			continue
		}
		switch attrs(s)["url.path"] {
		case "/users/42":
			users = s
		case "/fail":
			fails = s
		}
	}
	if users == nil || fails == nil {
		t.Fatalf("no server span for /users/42 or /fail in %s", spanNames(spans))
	}
	if a := attrs(users); users.Name() != "GET /users/{id}" || a["http.response.status_code"] != int64(200) || a["http.route"] != "/users/{id}" {
		t.Errorf("/users/42: %s %v", users.Name(), a)
	}
	if a := attrs(fails); fails.Name() != "POST /fail" || a["http.response.status_code"] != int64(500) || fails.Status().Code != codes.Error {
		t.Errorf("/fail: %s %v %v", fails.Name(), a, fails.Status())
	}
	if got := spanNames(named(spans, "inner")) + spanNames(named(spans, "outer")); got != "innerouter" {
		t.Errorf("custom probes: %q", got)
	}
}

// TestUnknownReleaseOffsets: the simulated release is read as go1.28.0,
// its runtime offsets come from machine code and equal what the go1.27
// build's DWARF says, and the built-in sets that need struct offsets are
// skipped with a reason naming the release.
func TestUnknownReleaseOffsets(t *testing.T) {
	var fromDWARF probes.Runtime
	for _, b := range fixtures(t) {
		if b.release == "go1.27" && !b.stripped {
			bin, err := probes.Open(b.path)
			if err != nil {
				t.Fatal(err)
			}
			fromDWARF, err = bin.Runtime()
			bin.Close()
			if err != nil || fromDWARF.Source != "DWARF" {
				t.Fatalf("go1.27: %+v, %v", fromDWARF, err)
			}
		}
	}
	for _, u := range unknownBuilds(t) {
		t.Run(u.name, func(t *testing.T) {
			bin, err := probes.Open(u.path)
			if err != nil {
				t.Fatal(err)
			}
			defer bin.Close()
			if bin.GoVersion != unknownRelease || bin.HasDWARF {
				t.Fatalf("opened as %s, DWARF %v", bin.GoVersion, bin.HasDWARF)
			}
			rt, err := bin.Runtime()
			if err != nil {
				t.Fatal(err)
			}
			if rt.Source != "machine code" || rt.GoidOffset != fromDWARF.GoidOffset || rt.StackHiOffset != fromDWARF.StackHiOffset ||
				rt.ParentGoidOffset != fromDWARF.ParentGoidOffset {
				t.Errorf("runtime offsets %+v, DWARF of the same code says %+v", rt, fromDWARF)
			}
			_, reports, err := builtin.Resolve(bin, []string{"http"}, builtin.Options{}, rt, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(reports) != 1 || reports[0].Applied || !strings.Contains(reports[0].Reason, unknownRelease) || strings.Contains(reports[0].Reason, "\n") {
				t.Errorf("http set: %+v, want skipped with a one-line reason naming %s", reports, unknownRelease)
			}
		})
	}
}

// TestUnknownReleaseLifecycle runs the custom-probe lifecycle on the
// simulated release: returned errors with their messages, nesting,
// goroutine lineage, async goroutines, panics unwinding frames, and
// runtime.Goexit.
func TestUnknownReleaseLifecycle(t *testing.T) {
	const yaml = `
probes:
  - symbol: main.Fail
    name: fail
    capture_error: true
    signature: "func(mode int) (int, error)"
    attributes: [{key: mode, from: arg0, type: int}]
  - {symbol: main.Outer, name: outer, signature: "func(n int) int"}
  - {symbol: main.Middle, name: middle, signature: "func(n int) int"}
  - {symbol: main.Inner, name: inner, signature: "func(n int) int"}
  - {symbol: main.Parent, name: parent, signature: "func() int"}
  - {symbol: main.Parent3, name: parent3, signature: "func() int"}
  - {symbol: main.AsyncWork, name: async.work, signature: "func(wg *int) int", async: {goroutines: true}}
  - {symbol: main.Recoverer, name: recoverer, signature: "func() error"}
  - {symbol: main.PanicA, name: panic.a, signature: "func() int"}
  - {symbol: main.PanicB, name: panic.b, signature: "func() int"}
  - {symbol: main.Handler, name: handler, signature: "func(n int) int"}
  - {symbol: main.Exiter, name: exiter, signature: "func() int"}
  - symbol: main.Child
    name: child
    signature: "func(id int) int"
    attributes: [{key: id, from: arg0, type: int}]
`
	for _, u := range unknownBuilds(t) {
		t.Run(u.name, func(t *testing.T) {
			tg := startTarget(t, u.path)
			ss := attach(t, tg.pid(), yaml)
			for _, cmd := range []string{"errors", "nested", "fanout", "fanout3", "asyncgo", "panic", "httppanic", "goexit"} {
				tg.run(t, cmd)
			}
			spans := ss.stop(t)
			one := func(name string) sdktrace.ReadOnlySpan {
				t.Helper()
				s := named(spans, name)
				if len(s) != 1 {
					t.Fatalf("%d %s spans in %s", len(s), name, spanNames(spans))
				}
				return s[0]
			}

			// Returned errors: the common types' messages, the type name
			// for the others, and exception events (capture_error).
			fails := named(spans, "fail")
			if len(fails) != 4 {
				t.Fatalf("%d fail spans, want 4", len(fails))
			}
			want := []struct {
				code     codes.Code
				msg, typ string
			}{
				{codes.Error, "plain failure", "*errors.errorString"},
				{codes.Error, "wrapped: base failure", "*fmt.wrapError"},
				{codes.Unset, "", ""},
				{codes.Error, "*main.codeError", "*main.codeError"},
			}
			for _, sp := range fails {
				mode, _ := attrs(sp)["mode"].(int64)
				if mode < 0 || mode > 3 {
					t.Fatalf("fail span with mode %v", attrs(sp)["mode"])
				}
				w := want[mode]
				if sp.Status().Code != w.code || sp.Status().Description != w.msg {
					t.Errorf("mode %d: status %v %q, want %v %q", mode, sp.Status().Code, sp.Status().Description, w.code, w.msg)
				}
				var ex []string
				for _, e := range sp.Events() {
					m := map[string]string{}
					for _, a := range e.Attributes {
						m[string(a.Key)] = a.Value.Emit()
					}
					ex = append(ex, e.Name+" "+m["exception.type"]+": "+m["exception.message"])
				}
				if w.code == codes.Error && (len(ex) != 1 || ex[0] != "exception "+w.typ+": "+w.msg) {
					t.Errorf("mode %d: events %q, want one exception %s: %s", mode, ex, w.typ, w.msg)
				}
			}

			// Nesting.
			outer, middle, inner := one("outer"), one("middle"), one("inner")
			if outer.Parent().IsValid() || !isChildOf(middle, outer) || !isChildOf(inner, middle) {
				t.Error("nesting is wrong: want outer > middle > inner")
			}

			// Goroutine lineage, one and three go statements down, and
			// async goroutines.
			parent, parent3, work := one("parent"), one("parent3"), one("async.work")
			children := named(spans, "child")
			if len(children) != 6 {
				t.Fatalf("%d child spans, want 6: %s", len(children), spanNames(spans))
			}
			kids := map[string][]int64{}
			for _, c := range children {
				id := attrs(c)["id"].(int64)
				for _, p := range []sdktrace.ReadOnlySpan{parent, parent3, work} {
					if isChildOf(c, p) {
						kids[p.Name()] = append(kids[p.Name()], id)
					}
				}
				if isChildOf(c, work) && work.EndTime().Before(c.EndTime()) {
					t.Errorf("async.work ended before its goroutine's child %d", id)
				}
			}
			for name, ids := range map[string]string{"parent": "[0 1 2]", "parent3": "[100]", "async.work": "[0 1]"} {
				got := kids[name]
				slices.Sort(got)
				if fmt.Sprint(got) != ids {
					t.Errorf("%s's children have ids %v, want %s", name, got, ids)
				}
			}
			if r := endReason(work); r != "" {
				t.Errorf("async.work ended by the agent (%s), not by its goroutines", r)
			}

			// Panics: unwound frames end with the panic's message, the
			// recovering frame with its own result.
			for _, name := range []string{"panic.a", "panic.b"} {
				if s := one(name); s.Status().Code != codes.Error || s.Status().Description != "panic: boom" {
					t.Errorf("%s: status %v, want error 'panic: boom'", name, s.Status())
				}
			}
			if s := one("recoverer"); s.Status().Description != "recovered: boom" || endReason(s) != "" {
				t.Errorf("recoverer: status %v reason %q", s.Status(), endReason(s))
			}
			if !isChildOf(one("panic.b"), one("panic.a")) || !isChildOf(one("panic.a"), one("recoverer")) {
				t.Error("panic frames nest wrongly")
			}
			if s := one("handler"); s.Status().Code != codes.Error || s.Status().Description != "panic: handler failed" {
				t.Errorf("handler that panicked in net/http: status %v", s.Status())
			}
			if s := one("exiter"); s.Status().Code != codes.Unset || endReason(s) != lifecycle.EndGoroutineExit {
				t.Errorf("exiter (runtime.Goexit): status %v reason %q", s.Status(), endReason(s))
			}
			tg.run(t, "nested") // the target is fine
		})
	}
}

package kerneltests

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// TestGoroutineCreateSites: on every Go build (1.19 and 1.20 among them),
// goroutine creation is seen at runtime.newproc.func1's emulated CALL
// runtime.runqput — that program runs, newproc1's RET program never does —
// and gives the lineage TestGoroutineLineage checks; with the RET probes
// forced (agent.Config.RetProbes) the same lineage comes from newproc1's
// RETs alone, and the session counts and logs the fallback.
func TestGoroutineCreateSites(t *testing.T) {
	// Program run counts, read from the session's stats.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run statistics: %v", err)
	}
	defer stats.Close()
	check := func(t *testing.T, b build) {
		for _, forced := range []bool{false, true} {
			logs := &lockedBuffer{}
			tg := startTarget(t, b.path)
			ss := attachWith(t, tg.pid(), lineageYAML, func(c *agent.Config) {
				c.RetProbes = forced
				c.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			tg.run(t, "fanout")
			tg.run(t, "fanout3")
			st := ss.s.Stats() // before the programs are closed
			checkLineage(t, ss.stop(t))
			runs := map[string]uint64{}
			for _, p := range st.Programs {
				runs[p.Name] = p.Runs
			}
			// Six go statements: three in fanout, three in fanout3.
			site, other := runs["tc_go_create_call"], runs["tc_go_create"]
			fallbackLogged := strings.Count(logs.String(), "goroutine creation probed at runtime.newproc1's RETs")
			if !forced {
				if !strings.HasPrefix(st.GoCreateSite, "runtime.newproc.func1+") || !strings.HasSuffix(st.GoCreateSite, " CALL runtime.runqput") || st.RetFallbacks != 0 {
					t.Errorf("goroutine creation probed at %q, %d RET fallbacks; want the CALL runqput in newproc.func1, none", st.GoCreateSite, st.RetFallbacks)
				}
				if site < 6 || other != 0 || fallbackLogged != 0 {
					t.Errorf("CALL-site program ran %d times, RET program %d times, fallback logged %d times; want at least 6, 0, 0", site, other, fallbackLogged)
				}
			} else {
				if st.GoCreateSite != "runtime.newproc1 RET" || st.RetFallbacks != 1 {
					t.Errorf("forced: goroutine creation probed at %q, %d RET fallbacks; want newproc1's RETs, 1", st.GoCreateSite, st.RetFallbacks)
				}
				if site != 0 || other < 6 || fallbackLogged != 1 {
					t.Errorf("forced: CALL-site program ran %d times, RET program %d times, fallback logged %d times; want 0, at least 6, once", site, other, fallbackLogged)
				}
			}
			// Without g.parentGoid the creator is read before newproc1
			// runs: at its CALLs, or at its entry when forced.
			old := b.release == "go1.19" || b.release == "go1.20"
			if entry := runs["tc_go_create_entry"]; old != (entry >= 6) || !old && entry != 0 {
				t.Errorf("forced %v: the creator's program ran %d times on %s", forced, entry, b.release)
			}
			if st.Kernel.ReadGFailed != 0 {
				t.Errorf("forced %v: %d reads of g failed", forced, st.Kernel.ReadGFailed)
			}
			t.Logf("forced %v: %s; program runs %v", forced, st.GoCreateSite, runs)
		}
	}
	forEachBuild(t, check)
	forEachOldBuild(t, check)
}

// TestCoroutineLineage: a coroutine of iter.Pull (Go 1.23+) is a goroutine
// the runtime starts from runtime.newcoro, not from a go statement: its
// creation is seen at the return address of newcoro.func1's CALL
// runtime.newproc1 (tc_go_create runs there, single-stepped but rare),
// and the spans its sequence makes are children of the span that called
// iter.Pull — the same with the RET probes forced.
func TestCoroutineLineage(t *testing.T) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run statistics: %v", err)
	}
	defer stats.Close()
	yaml := `
probes:
  - {symbol: main.PullParent, name: pullparent, signature: "func() int"}
` + childProbe
	forEachBuild(t, func(t *testing.T, b build) {
		if probes.ReleaseLess(b.release, "go1.23") {
			t.Skipf("no iter.Pull in %s", b.release)
		}
		for _, forced := range []bool{false, true} {
			tg := startTarget(t, b.path)
			ss := attachWith(t, tg.pid(), yaml, func(c *agent.Config) { c.RetProbes = forced })
			tg.run(t, "pull")
			st := ss.s.Stats() // before the programs are closed
			spans := ss.stop(t)
			parent, children := named(spans, "pullparent"), named(spans, "child")
			if len(parent) != 1 || len(children) != 2 {
				t.Fatalf("forced %v: spans %s", forced, spanNames(spans))
			}
			ids := map[int64]bool{}
			for _, c := range children {
				id := attrs(c)["id"].(int64)
				ids[id] = true
				if !isChildOf(c, parent[0]) {
					t.Errorf("forced %v: child %d is not a child of pullparent", forced, id)
				}
				if r := endReason(c); r != "" {
					t.Errorf("forced %v: child %d ended by the agent (%s)", forced, id, r)
				}
			}
			if !ids[200] || !ids[201] {
				t.Errorf("forced %v: child ids %v, want 200 and 201", forced, ids)
			}
			if r := endReason(parent[0]); r != "" {
				t.Errorf("forced %v: pullparent ended by the agent (%s)", forced, r)
			}
			runs := map[string]uint64{}
			for _, p := range st.Programs {
				runs[p.Name] = p.Runs
			}
			// No go statement runs in "pull" but the coroutine's creation
			// (the fixture is idle otherwise): newcoro.func1's return site
			// when not forced, newproc1's RETs when forced, the same
			// program.
			if runs["tc_go_create"] == 0 || !forced && !strings.HasPrefix(st.GoCreateSite, "runtime.newproc.func1+") {
				t.Errorf("forced %v: tc_go_create ran %d times, creation probed at %q; want > 0 and, not forced, newproc.func1's site",
					forced, runs["tc_go_create"], st.GoCreateSite)
			}
			if st.Kernel.ReadGFailed != 0 {
				t.Errorf("forced %v: %d reads of g failed", forced, st.Kernel.ReadGFailed)
			}
			t.Logf("forced %v: program runs %v", forced, runs)
		}
	})
}

// TestGoroutineUnmarked: a goroutine created outside any span, by a
// goroutine no traced call ran on, sends neither its creation nor its exit
// (the kernel counts them as unmarked instead: userspace would ignore
// them), while the lineage of goroutines started under spans is whole —
// on every Go build, 1.19 and 1.20 (their creator read at the CALL
// newproc1) among them.
func TestGoroutineUnmarked(t *testing.T) {
	// cmd starts goroutines from the fixture's main goroutine before any
	// traced call ran on it: n of them.
	check := func(cmd string, n uint64) func(t *testing.T, b build) {
		return func(t *testing.T, b build) {
			tg := startTarget(t, b.path)
			ss := attachWith(t, tg.pid(), lineageYAML, nil)
			tg.run(t, cmd)
			tg.run(t, "fanout") // cmd's goroutines have exited by its end
			tg.run(t, "fanout3")
			// The churn's WaitGroup lets cmd end before its last goroutine
			// has reached goexit1: on a loaded machine it may not have yet.
			var k bpf.Counters
			waitFor(t, fmt.Sprintf("%d unmarked creations and exits (%s's)", 2*n, cmd), func() bool {
				k = ss.s.Stats().Kernel
				return k.GoUnmarked >= 2*n
			})
			checkLineage(t, ss.stop(t))
			events := ss.s.Stats().Lifecycle.Events // all read by now
			// The fanouts send some tens of events; a churn's goroutines,
			// were they sent, 2n.
			if n > 1000 && events >= n {
				t.Errorf("%d events read, want fewer than %d", events, n)
			}
			if k.MarksFull != 0 || k.ReadGFailed != 0 || k.RingbufFull != 0 {
				t.Errorf("kernel counters %+v", k)
			}
			t.Logf("%d unmarked, %d events read", k.GoUnmarked, events)
		}
	}
	forEachBuild(t, check("churn", 100000))
	forEachOldBuild(t, check("goexit", 1)) // its fixture has no churn
}

package kerneltests

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/agent"
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

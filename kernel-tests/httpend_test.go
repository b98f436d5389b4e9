package kerneltests

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/probes"
)

// TestHTTPServerEndSite: on every Go build (1.19 and 1.20 among them) the
// http server span ends in net/http.(*conn).serve at the emulated CALL
// (*conn).hijacked after ServeHTTP returns (tc_call_end runs; no fallback
// logged or counted), and the spans — of requests whose handler returns,
// fails, panics, hijacks its connection or exits its goroutine, and of
// HTTP/2 requests over TLS and without (h2c, Go 1.24+), which end at the
// return address of the call that reached ServeHTTP (initALPNRequest's or
// unencryptedHTTP2Request's up to Go 1.26, http2Handler.ServeHTTP's
// interface call from Go 1.27) — are those the RET probes give when forced
// (agent.Config.RetProbes, which logs and counts the fallback and never
// runs tc_call_end). Each HTTP/2 request is one span, ended once.
func TestHTTPServerEndSite(t *testing.T) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run statistics: %v", err)
	}
	defer stats.Close()
	check := func(h2 bool, cmds ...string) func(t *testing.T, b build) {
		return func(t *testing.T, b build) {
			var got [2][]string
			for i, forced := range []bool{false, true} {
				logs := &lockedBuffer{}
				tg := startTarget(t, b.path)
				ss := attachWith(t, tg.pid(), "", func(c *agent.Config) {
					c.Builtin = []string{"http"}
					c.RetProbes = forced
					c.Logger = slog.New(slog.NewTextHandler(logs, nil))
				})
				for _, c := range cmds {
					tg.run(t, c)
				}
				st := ss.s.Stats() // before the programs are closed
				spans := ss.stop(t)
				runs := map[string]uint64{}
				for _, p := range st.Programs {
					runs[p.Name] = p.Runs
				}
				// Calls that return normally reach the site; a panic or
				// Goexit unwinds them past it.
				servers, returned := 0, 0
				for _, s := range spans {
					if s.SpanKind().String() == "server" {
						servers++
						if endReason(s) == "" && !strings.HasPrefix(s.Status().Description, "panic:") {
							returned++
						}
					}
				}
				logged := strings.Count(logs.String(), "call ends probed at the RETs")
				if !forced && (returned == 0 || runs["tc_call_end"] < uint64(returned) || st.RetFallbacks != 0 || logged != 0) {
					t.Errorf("tc_call_end ran %d times for %d server calls that returned, %d RET fallbacks, fallback logged %d times; want at least %d (> 0), 0, 0",
						runs["tc_call_end"], returned, st.RetFallbacks, logged, returned)
				}
				if h2 {
					checkH2Once(t, b, spans)
				}
				if forced && (runs["tc_call_end"] != 0 || st.RetFallbacks != 2 || logged != 1) {
					t.Errorf("forced: tc_call_end ran %d times, %d RET fallbacks, fallback logged %d times; want 0, 2 (with goroutine creation), once",
						runs["tc_call_end"], st.RetFallbacks, logged)
				}
				if servers == 0 {
					t.Fatalf("forced %v: no server span in %s", forced, spanNames(spans))
				}
				if k := st.Kernel; k.UnmatchedReturn != 0 || k.ReadGFailed != 0 || k.RingbufFull != 0 {
					t.Errorf("forced %v: kernel counters %+v", forced, k)
				}
				got[i] = spanSummary(spans)
				t.Logf("forced %v: %d server spans; program runs %v", forced, servers, runs)
			}
			if !slices.Equal(got[0], got[1]) {
				t.Errorf("spans differ:\nemulated site:\n  %s\nRET probes:\n  %s", strings.Join(got[0], "\n  "), strings.Join(got[1], "\n  "))
			}
		}
	}
	forEachBuild(t, check(true, "http", "httpends", "h2", "h2ends", "h2cends"))
	forEachOldBuild(t, check(false, "http"))
}

// checkH2Once asserts that each HTTP/2 request of the fixture's h2ends
// and h2cends (one per route, under /h2 over TLS and, from Go 1.24, under
// /h2c without) is exactly one server span: none lost, none ended twice.
func checkH2Once(t *testing.T, b build, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	prefixes := []string{"/h2", "/h2c"}
	if probes.ReleaseLess(b.release, "go1.24") {
		prefixes = prefixes[:1]
	}
	n := map[string]int{}
	for _, s := range spans {
		if s.SpanKind().String() == "server" {
			n[fmt.Sprint(attrs(s)["url.path"])]++
		}
	}
	for _, prefix := range prefixes {
		for _, route := range []string{"/ok", "/fail", "/boom", "/goexit"} {
			if n[prefix+route] != 1 {
				t.Errorf("%d server spans of %s%s, want 1 (all: %v)", n[prefix+route], prefix, route, n)
			}
		}
	}
}

// spanSummary describes each span by what does not change from run to run
// (its name, kind, parent's name, status, end reason and attributes but the
// ports), sorted, each once.
func spanSummary(spans []sdktrace.ReadOnlySpan) []string {
	names := map[string]string{}
	for _, s := range spans {
		names[s.SpanContext().SpanID().String()] = s.Name()
	}
	var out []string
	for _, s := range spans {
		var as []string
		for k, v := range attrs(s) {
			if strings.HasSuffix(k, ".port") {
				continue
			}
			as = append(as, fmt.Sprintf("%s=%v", k, v))
		}
		sort.Strings(as)
		out = append(out, fmt.Sprintf("%s %s parent=%q status=%v %q {%s}", s.SpanKind(), s.Name(),
			names[s.Parent().SpanID().String()], s.Status().Code, s.Status().Description, strings.Join(as, " ")))
	}
	// Ports change from run to run; a span that may come twice (a GET
	// the client retries on a new connection) is counted once.
	for i := range out {
		out[i] = ephemeralPort.ReplaceAllString(out[i], ":PORT")
	}
	sort.Strings(out)
	return slices.Compact(out)
}

var ephemeralPort = regexp.MustCompile(`:[0-9]{2,5}\b`)

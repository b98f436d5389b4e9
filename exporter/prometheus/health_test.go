package prometheus_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	tcprom "github.com/tcagent/tcagent/exporter/prometheus"
)

type fakeSession tcprom.Process

func (f *fakeSession) Health() tcprom.Process { return tcprom.Process(*f) }

type fakeDaemon struct{ ready bool }

func (d fakeDaemon) Ready() bool { return d.ready }
func (d fakeDaemon) Stats() tcprom.DaemonStats {
	return tcprom.DaemonStats{Traced: 3, Images: 2, DiscoveryLost: 1, Decisions: map[string]uint64{"traced": 3, "not_go": 7},
		Lost: map[string]uint64{"ringbuf_full": 5}}
}

// The health collector exports exactly what the wiring hands it, under the
// names and labels the dashboard and alerts query.
func TestHealthFromStats(t *testing.T) {
	m := tcprom.New(10)
	s := &fakeSession{Service: "svc", PID: 42, Events: 9, DecodeErrors: 1,
		Lost:       map[string]uint64{"ringbuf_full": 4},
		Anomalies:  map[string]uint64{"expired": 2},
		Unreadable: map[string]uint64{"panic": 5},
		OpenCalls:  6, RetFallbacks: 1,
		Propagation: map[string]uint64{"handed": 8},
		Programs:    []tcprom.Program{{Name: "uprobe_entry", Runs: 11, Runtime: 1500 * time.Millisecond}}}
	m.AddSession(s)
	m.SetExports(func() tcprom.ExportStats { return tcprom.ExportStats{Exported: 12, Dropped: 1} })
	want := `
# HELP tcagent_events_read_total Events read from the ring buffer.
# TYPE tcagent_events_read_total counter
tcagent_events_read_total{pid="42",service="svc"} 9
# HELP tcagent_open_calls Traced calls open now.
# TYPE tcagent_open_calls gauge
tcagent_open_calls{pid="42",service="svc"} 6
# HELP tcagent_ret_fallback_probes Hot-path probes (goroutine creation, the net/http server span's end) left on single-stepped RET instructions because their emulated call site was not found in the binary (the agent's log says why).
# TYPE tcagent_ret_fallback_probes gauge
tcagent_ret_fallback_probes{pid="42",service="svc"} 1
# HELP tcagent_spans_exported_total Spans the exporter accepted.
# TYPE tcagent_spans_exported_total counter
tcagent_spans_exported_total 12
# HELP tcagent_ready 1 once every probe of a traced process is attached.
# TYPE tcagent_ready gauge
tcagent_ready 1
`
	names := []string{"tcagent_events_read_total", "tcagent_open_calls", "tcagent_ret_fallback_probes", "tcagent_spans_exported_total", "tcagent_ready"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	series := func(name string) int {
		t.Helper()
		n, err := testutil.GatherAndCount(m.Registry(), name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Every reason and kind is a series, zero or not, so that rate() over a
	// first loss works.
	if n := series("tcagent_events_lost_total"); n != 4 {
		t.Errorf("tcagent_events_lost_total: %d series, want 4 reasons", n)
	}
	if n := series("tcagent_lifecycle_anomalies_total"); n != 9 {
		t.Errorf("tcagent_lifecycle_anomalies_total: %d series, want 9 kinds", n)
	}
	if n := series("tcagent_bpf_program_run_seconds_total"); n != 1 {
		t.Errorf("tcagent_bpf_program_run_seconds_total: %d series, want 1", n)
	}
	// Propagation counts only with --propagate's socket side.
	if n := series("tcagent_propagation_requests_total"); n != 0 {
		t.Errorf("without --propagate: %d propagation series", n)
	}
	m.SetSocket(func() (tcprom.SocketStats, error) { return tcprom.SocketStats{"injected": 8}, nil })
	want = `
# HELP tcagent_propagation_socket_total --propagate: requests handed to the socket programs, by outcome at the socket: injected, not_http1 (the first write was no HTTP/1.x request line), no_room (the header could not be added); all but injected went out unchanged.
# TYPE tcagent_propagation_socket_total counter
tcagent_propagation_socket_total{outcome="injected"} 8
tcagent_propagation_socket_total{outcome="no_room"} 0
tcagent_propagation_socket_total{outcome="not_http1"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "tcagent_propagation_socket_total"); err != nil {
		t.Fatal(err)
	}
	if n := series("tcagent_propagation_requests_total"); n != 6 {
		t.Errorf("with --propagate: %d propagation outcomes, want 6", n)
	}
	m.RemoveSession(s)
	if n := series("tcagent_events_read_total"); n != 0 {
		t.Errorf("a removed session still has %d series", n)
	}
}

// With a daemon, readiness is the daemon's and its counts are exported.
func TestHealthFromDaemon(t *testing.T) {
	m := tcprom.New(10)
	m.SetDaemon(fakeDaemon{ready: false})
	if m.Ready() {
		t.Error("ready although the daemon is not")
	}
	want := `
# HELP tcagent_daemon_executables_attached daemon: executables with one shared set of uprobes attached.
# TYPE tcagent_daemon_executables_attached gauge
tcagent_daemon_executables_attached 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "tcagent_daemon_executables_attached"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(m.Registry(), "tcagent_daemon_processes_total"); n != 7 {
		t.Errorf("tcagent_daemon_processes_total: %d decisions, want 7", n)
	}
	if n, _ := testutil.GatherAndCount(m.Registry(), "tcagent_daemon_events_lost_total"); n != 4 {
		t.Errorf("tcagent_daemon_events_lost_total: %d reasons, want 4", n)
	}
	lost := `
# HELP tcagent_daemon_events_lost_total daemon: events of processes not decided yet (followed from their exec on, before a session counts them) the kernel could not deliver, by reason, as tcagent_events_lost_total.
# TYPE tcagent_daemon_events_lost_total counter
tcagent_daemon_events_lost_total{reason="calls_map_full"} 0
tcagent_daemon_events_lost_total{reason="goroutine_marks_full"} 0
tcagent_daemon_events_lost_total{reason="goroutine_unreadable"} 0
tcagent_daemon_events_lost_total{reason="ringbuf_full"} 5
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(lost), "tcagent_daemon_events_lost_total"); err != nil {
		t.Fatal(err)
	}
}

// The kernel memory the maps lock is exported once set, as the wiring
// reads it; a failed read leaves the series out rather than report 0.
func TestHealthKernelMemory(t *testing.T) {
	m := tcprom.New(10)
	if n, _ := testutil.GatherAndCount(m.Registry(), "tcagent_bpf_memory_bytes"); n != 0 {
		t.Errorf("%d series before the maps are loaded", n)
	}
	var err error
	m.SetKernelMemory(func() (uint64, error) { return 25 << 20, err })
	want := `
# HELP tcagent_bpf_memory_bytes Kernel memory locked by the agent's BPF maps and ring buffer (the kernel's memlock account of each), charged to the agent's cgroup; sized by the daemon's --ring-buffer-size, --map-entries, --max-processes and --max-probes.
# TYPE tcagent_bpf_memory_bytes gauge
tcagent_bpf_memory_bytes 2.62144e+07
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "tcagent_bpf_memory_bytes"); err != nil {
		t.Fatal(err)
	}
	err = errors.New("fdinfo unreadable")
	if n, _ := testutil.GatherAndCount(m.Registry(), "tcagent_bpf_memory_bytes"); n != 0 {
		t.Errorf("%d series after a failed read, want none", n)
	}
}

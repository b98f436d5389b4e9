package prometheus

import "time"

// The health collector reads the agent's own counts through these types,
// which the wiring fills: the endpoint depends on no part of the pipeline,
// so any wiring (attach, run, daemon, tests) can feed it.

// Process is what one traced process's pipeline has counted so far.
type Process struct {
	Service string
	PID     int
	// Events read from the ring buffer, and the records that could not be
	// decoded.
	Events, DecodeErrors uint64
	// Lost are the events the kernel could not deliver, by reason
	// (ringbuf_full, goroutine_unreadable, calls_map_full).
	Lost map[string]uint64
	// Anomalies are the calls the lifecycle could not follow, by kind
	// (unknown_probe, unmatched_end, lost_end, events_lost, panic_unwound,
	// expired, overflow_calls, overflow_goroutines, overflow_pending).
	Anomalies map[string]uint64
	// Unreadable are the values that could not be read or trusted, by what
	// (capture, header, error, panic).
	Unreadable                     map[string]uint64
	OpenCalls, Goroutines, Pending int
	ProbesAttached, ProbesFailed   int
	Uprobes                        int
	// RetFallbacks are the hot-path probes left on single-stepped RETs
	// because their emulated site was not found.
	RetFallbacks                      int
	InvalidTraceContext, TracesJoined uint64
	// Propagation is, with --propagate, what became of the HTTP/1 client
	// requests' trace context, by outcome; nil without --propagate.
	Propagation                  map[string]uint64
	TraceMismatches, PropMatched uint64
	Programs                     []Program
}

// Program is one BPF program's run statistics.
type Program struct {
	Name    string
	Runs    uint64
	Runtime time.Duration
}

// Session is a traced process as the metrics see it.
type Session interface {
	// Health returns the process's counts; it is called at scrape time,
	// from the scraping goroutine.
	Health() Process
}

// DaemonStats are the host-wide daemon's counts.
type DaemonStats struct {
	Traced, Waiting, Images     int
	DiscoveryLost, Unattributed uint64
	// DecodeErrors are the events read that could not be decoded.
	DecodeErrors uint64
	// Lost are the events of processes not decided yet the kernel could
	// not deliver, by reason (as Process.Lost).
	Lost map[string]uint64
	// Decisions counts processes by what became of them.
	Decisions map[string]uint64
}

// Daemon is the host-wide daemon, as the metrics see it.
type Daemon interface {
	Ready() bool
	Stats() DaemonStats
}

// ExportStats are the span exporter's counts.
type ExportStats struct {
	Exported, Dropped, Failed, ExportErrors uint64
}

// SocketStats are --propagate's socket programs' counts, by outcome
// (injected, not_http1, no_room).
type SocketStats map[string]uint64

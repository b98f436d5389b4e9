package agent

import (
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/exporter/prometheus"
)

// LostReasons are the kernel's losses by the reasons the metrics name.
func LostReasons(k bpf.Counters) map[string]uint64 {
	return map[string]uint64{"ringbuf_full": k.RingbufFull, "goroutine_unreadable": k.ReadGFailed, "calls_map_full": k.CallsEvicted, "goroutine_marks_full": k.MarksFull}
}

// Health returns the session's counts as the metrics endpoint shows them
// (prometheus.Session): the endpoint knows nothing of the pipeline, the
// wiring translates.
func (s *Session) Health() prometheus.Process {
	st := s.Snapshot()
	k, lc, u := st.Kernel, st.Lifecycle, st.Unreadable
	h := prometheus.Process{
		Service: st.Service, PID: st.PID,
		Events: lc.Events, DecodeErrors: st.DecodeErrors,
		Lost: LostReasons(k),
		Anomalies: map[string]uint64{
			"unknown_probe": lc.UnknownProbe, "unmatched_end": lc.UnmatchedEnds, "lost_end": lc.LostEnds, "events_lost": lc.LostGoroutines,
			"panic_unwound": lc.PanicUnwound, "expired": lc.Expired, "overflow_calls": lc.OverflowCalls,
			"overflow_goroutines": lc.OverflowGoroutines, "overflow_pending": lc.OverflowPending,
		},
		Unreadable: map[string]uint64{"capture": u.Capture, "header": u.Header, "error": u.Error, "panic": u.Panic},
		OpenCalls:  st.OpenCalls, Goroutines: st.Goroutines, Pending: st.Pending,
		ProbesAttached: st.ProbesAttached, ProbesFailed: st.ProbesFailed, Uprobes: st.Uprobes, RetFallbacks: st.RetFallbacks,
		InvalidTraceContext: st.InvalidTraceContext, TracesJoined: st.TracesJoined,
		TraceMismatches: st.TraceMismatches, PropMatched: k.PropMatched,
	}
	// The endpoint exports Propagation only with --propagate. The counters
	// are read one after the other while requests go on: an outcome may be
	// counted before its request is.
	handed := uint64(0)
	if left := k.PropTLS + k.PropPresent + k.PropNoConn + k.PropUntracked; k.PropRequests > left {
		handed = k.PropRequests - left
	}
	h.Propagation = map[string]uint64{
		"handed": handed, "tls": k.PropTLS,
		"traceparent_present": k.PropPresent, "no_tcp_connection": k.PropNoConn,
		"connection_predates_agent": k.PropUntracked, "not_http1_connection": k.PropNotSent,
	}
	for _, p := range st.Programs {
		h.Programs = append(h.Programs, prometheus.Program{Name: p.Name, Runs: p.Runs, Runtime: p.Runtime})
	}
	return h
}

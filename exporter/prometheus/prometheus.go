// Package prometheus serves tcagent's metrics: RED metrics of every probe,
// taken from the spans, and the agent's own health, including every loss, so
// that nothing is dropped silently. It also answers /healthz and /readyz.
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Other is the label value that stands for every series past the
// cardinality cap.
const Other = "other"

// Metrics is the registry of one agent.
type Metrics struct {
	reg        *prometheus.Registry
	duration   *prometheus.HistogramVec
	calls      *prometheus.CounterVec
	errs       *prometheus.CounterVec
	started    prometheus.Counter
	ended      prometheus.Counter
	overflow   prometheus.Counter
	maxSeries  int
	httpServer *prometheus.HistogramVec
	httpClient *prometheus.HistogramVec
	dbClient   *prometheus.HistogramVec
	rpcServer  *prometheus.HistogramVec
	rpcClient  *prometheus.HistogramVec
	messaging  *prometheus.HistogramVec

	mu     sync.Mutex
	series map[[2]string]bool
	// observers caches the semantic-convention histogram of each series
	// within the cap: looking a series up by its label values costs more
	// per span than the rest of the span metrics.
	observers map[observerKey]prometheus.Observer
	sessions  map[Session]struct{}
	exports   func() ExportStats
	// socket is --propagate's socket side, nil without it.
	socket func() (SocketStats, error)
	// kernelMemory reads the bytes the BPF maps lock; nil before set.
	kernelMemory func() (uint64, error)
	ready        bool
	daemon       Daemon
}

// SetDaemon reports the daemon's counts; readiness is then the daemon's:
// the processes running when it started have been looked at.
func (m *Metrics) SetDaemon(d Daemon) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.daemon = d
}

// New returns the metrics, with at most maxSeries (service, probe) label
// pairs for the RED metrics; the rest share the label value Other.
func New(maxSeries int) *Metrics {
	if maxSeries <= 0 {
		maxSeries = 1000
	}
	labels := []string{"service", "probe"}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tcagent_probe_duration_seconds",
			Help:    "Duration of traced calls, from the span of each call.",
			Buckets: []float64{.000005, .00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, labels),
		calls:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcagent_probe_calls_total", Help: "Traced calls that ended."}, labels),
		errs:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcagent_probe_errors_total", Help: "Traced calls that ended with status error."}, labels),
		started:   prometheus.NewCounter(prometheus.CounterOpts{Name: "tcagent_spans_started_total", Help: "Spans started."}),
		ended:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tcagent_spans_ended_total", Help: "Spans ended."}),
		overflow:  prometheus.NewCounter(prometheus.CounterOpts{Name: "tcagent_metric_series_overflow_total", Help: "Observations recorded under the label value \"other\" because the series cap was reached."}),
		maxSeries: maxSeries,
		series:    map[[2]string]bool{},
		observers: map[observerKey]prometheus.Observer{},
		sessions:  map[Session]struct{}{},
	}
	// The semantic conventions' metrics for the built-in probes, with their
	// standard low-cardinality attributes as labels.
	semconvBuckets := []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	m.httpServer = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_server_request_duration_seconds",
		Help: "Duration of HTTP server requests (http.server.request.duration).", Buckets: semconvBuckets},
		[]string{"service", "http_request_method", "http_response_status_code", "http_route", "network_protocol_version", "url_scheme", "error_type"})
	m.httpClient = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_client_request_duration_seconds",
		Help: "Duration of HTTP client requests (http.client.request.duration).", Buckets: semconvBuckets},
		[]string{"service", "http_request_method", "http_response_status_code", "server_address", "server_port", "error_type"})
	m.dbClient = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "db_client_operation_duration_seconds",
		Help: "Duration of database client operations (db.client.operation.duration).", Buckets: semconvBuckets},
		[]string{"service", "db_system_name", "db_operation_name", "error_type"})
	rpcLabels := []string{"service", "rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code", "error_type"}
	m.rpcServer = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rpc_server_duration_seconds",
		Help: "Duration of RPCs served (rpc.server.duration).", Buckets: semconvBuckets}, rpcLabels)
	m.rpcClient = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rpc_client_duration_seconds",
		Help: "Duration of RPCs made (rpc.client.duration).", Buckets: semconvBuckets}, rpcLabels)
	m.messaging = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "messaging_client_operation_duration_seconds",
		Help: "Duration of messaging operations: sends and receives (messaging.client.operation.duration).", Buckets: semconvBuckets},
		[]string{"service", "messaging_system", "messaging_operation_name", "messaging_operation_type", "messaging_destination_name", "error_type"})
	m.reg.MustRegister(m.httpServer, m.httpClient, m.dbClient, m.rpcServer, m.rpcClient, m.messaging)
	m.reg.MustRegister(m.duration, m.calls, m.errs, m.started, m.ended, m.overflow, (*health)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics live.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AddSession makes a traced process's counts part of the metrics; a session
// added marks the agent ready.
func (m *Metrics) AddSession(s Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[s] = struct{}{}
	m.ready = true
}

// RemoveSession stops reporting s (its counts were final).
func (m *Metrics) RemoveSession(s Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, s)
}

// SetExports reports the span export counts that stats returns.
func (m *Metrics) SetExports(stats func() ExportStats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exports = stats
}

// SetSocket reports the counts of --propagate's socket programs, and the
// sessions' propagation counts; without it, neither is exported.
func (m *Metrics) SetSocket(stats func() (SocketStats, error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.socket = stats
}

// SetKernelMemory reports the kernel memory the agent's BPF maps and ring
// buffers lock, as memory returns it at scrape time.
func (m *Metrics) SetKernelMemory(memory func() (uint64, error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kernelMemory = memory
}

// SpanProcessor returns the processor that takes RED metrics from spans.
func (m *Metrics) SpanProcessor() sdktrace.SpanProcessor { return (*spans)(m) }

type spans Metrics

func (s *spans) OnStart(context.Context, sdktrace.ReadWriteSpan) { s.started.Inc() }

func (s *spans) OnEnd(span sdktrace.ReadOnlySpan) {
	m := (*Metrics)(s)
	m.ended.Inc()
	service := ""
	if v, ok := span.Resource().Set().Value("service.name"); ok {
		service = v.AsString()
	}
	if m.semconv(service, span) {
		return
	}
	key := [2]string{service, span.Name()}
	m.mu.Lock()
	if !m.series[key] {
		if len(m.series) >= m.maxSeries {
			key = [2]string{service, Other}
			m.overflow.Inc()
		} else {
			m.series[key] = true
		}
	}
	m.mu.Unlock()
	m.duration.WithLabelValues(key[0], key[1]).Observe(span.EndTime().Sub(span.StartTime()).Seconds())
	m.calls.WithLabelValues(key[0], key[1]).Inc()
	if span.Status().Code == codes.Error {
		m.errs.WithLabelValues(key[0], key[1]).Inc()
	}
}

// semconv records the semantic-convention metric of a built-in probe's span
// and reports whether the span was one.
func (m *Metrics) semconv(service string, span sdktrace.ReadOnlySpan) bool {
	attrs := span.Attributes()
	get := func(key string) string {
		for _, a := range attrs {
			if string(a.Key) == key {
				return a.Value.Emit()
			}
		}
		return ""
	}
	var h *prometheus.HistogramVec
	var labels []string
	errType := get("error.type")
	if errType == "" && span.Status().Code == codes.Error {
		errType = "_OTHER"
	}
	switch {
	case get("http.request.method") != "" && span.SpanKind() == trace.SpanKindServer:
		h, labels = m.httpServer, []string{service, get("http.request.method"), get("http.response.status_code"), get("http.route"),
			get("network.protocol.version"), get("url.scheme"), errType}
	case get("http.request.method") != "" && span.SpanKind() == trace.SpanKindClient:
		h, labels = m.httpClient, []string{service, get("http.request.method"), get("http.response.status_code"), get("server.address"),
			get("server.port"), errType}
	case get("rpc.system") != "" && (span.SpanKind() == trace.SpanKindServer || span.SpanKind() == trace.SpanKindClient):
		h = m.rpcServer
		if span.SpanKind() == trace.SpanKindClient {
			h = m.rpcClient
		}
		labels = []string{service, get("rpc.system"), get("rpc.service"), get("rpc.method"), get("rpc.grpc.status_code"), errType}
	case get("db.system.name") != "":
		h, labels = m.dbClient, []string{service, get("db.system.name"), get("db.operation.name"), errType}
	case get("messaging.system") != "" && (span.SpanKind() == trace.SpanKindProducer || span.SpanKind() == trace.SpanKindConsumer):
		h, labels = m.messaging, []string{service, get("messaging.system"), get("messaging.operation.name"), get("messaging.operation.type"),
			get("messaging.destination.name"), errType}
	default:
		return false
	}
	key := [2]string{service, strings.Join(labels, "\x00")}
	m.mu.Lock()
	obs := m.observers[observerKey{h, key}]
	if obs == nil {
		switch {
		case m.series[key]:
		case len(m.series) >= m.maxSeries:
			for i := 1; i < len(labels); i++ {
				labels[i] = Other
			}
			m.overflow.Inc()
		default:
			m.series[key] = true
			obs = h.WithLabelValues(labels...)
			m.observers[observerKey{h, key}] = obs
		}
	}
	m.mu.Unlock()
	if obs == nil {
		obs = h.WithLabelValues(labels...)
	}
	obs.Observe(span.EndTime().Sub(span.StartTime()).Seconds())
	return true
}

// observerKey is a series of one semantic-convention histogram.
type observerKey struct {
	h      *prometheus.HistogramVec
	series [2]string
}

func (s *spans) Shutdown(context.Context) error   { return nil }
func (s *spans) ForceFlush(context.Context) error { return nil }

// health collects the agents' own counts at scrape time.
type health Metrics

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	eventsRead         = desc("tcagent_events_read_total", "Events read from the ring buffer.", "service", "pid")
	eventsLost         = desc("tcagent_events_lost_total", "Events the kernel could not deliver, by reason: ringbuf_full (no room in the ring buffer, per CPU summed), goroutine_unreadable (the goroutine's g could not be read), calls_map_full (an entry could not be recorded).", "service", "pid", "reason")
	decodeErrors       = desc("tcagent_decode_errors_total", "Ring-buffer records that could not be decoded.", "service", "pid")
	anomalies          = desc("tcagent_lifecycle_anomalies_total", "Calls the lifecycle could not follow, by kind: unknown_probe, unmatched_end, lost_end, events_lost (goroutine state reset), panic_unwound, expired (max span age), overflow_calls, overflow_goroutines, overflow_pending.", "service", "pid", "kind")
	openCalls          = desc("tcagent_open_calls", "Traced calls open now.", "service", "pid")
	goroutines         = desc("tcagent_tracked_goroutines", "Goroutines the agent holds state for.", "service", "pid")
	pending            = desc("tcagent_pending_async_calls", "Async calls that returned and wait to settle.", "service", "pid")
	probes             = desc("tcagent_probes_attached", "Probes attached.", "service", "pid")
	badContext         = desc("tcagent_trace_context_invalid_total", "Incoming traceparent/tracestate headers ignored as malformed or oversized.", "service", "pid")
	probesFailed       = desc("tcagent_probes_failed", "Built-in probe sets that apply to the binary but could not be attached (see the agent's log).", "service", "pid")
	uprobes            = desc("tcagent_uprobes_attached", "Uprobe offsets attached (entries, returns and runtime probes).", "service", "pid")
	retFallbacks       = desc("tcagent_ret_fallback_probes", "Hot-path probes (goroutine creation, the net/http server span's end) left on single-stepped RET instructions because their emulated call site was not found in the binary (the agent's log says why).", "service", "pid")
	progRuns           = desc("tcagent_bpf_program_runs_total", "Runs of each BPF program (needs kernel.bpf_stats_enabled=1).", "service", "pid", "program")
	progTime           = desc("tcagent_bpf_program_run_seconds_total", "Time spent in each BPF program (needs kernel.bpf_stats_enabled=1).", "service", "pid", "program")
	spansExported      = desc("tcagent_spans_exported_total", "Spans the exporter accepted.")
	spansDropped       = desc("tcagent_spans_dropped_total", "Spans dropped before export: the export queue was full (spans given up at shutdown are in the agent's last log line).")
	spansFailed        = desc("tcagent_spans_export_failed_total", "Spans in exports that failed.")
	exportErrors       = desc("tcagent_export_errors_total", "Failed exports.")
	ready              = desc("tcagent_ready", "1 once every probe of a traced process is attached.")
	propRequests       = desc("tcagent_propagation_requests_total", "--propagate: HTTP/1 client requests by what became of their trace context: handed (to the socket programs), and sent unchanged: tls, traceparent_present (the program set one), no_tcp_connection (a connection of another type), connection_predates_agent (opened before the socket programs were attached), not_http1_connection (HTTP/2, the program's own RoundTripper, or no connection made).", "service", "pid", "outcome")
	propMismatch       = desc("tcagent_propagation_trace_mismatches_total", "--propagate: spans whose parent was in another trace than the one the kernel made for them (and a request may have carried).", "service", "pid")
	propMatched        = desc("tcagent_propagation_matched_total", "--propagate: server spans whose request carried no trace context (TLS, say), matched by connection to the client span that sent it, both traced here.", "service", "pid")
	daemonTraced       = desc("tcagent_daemon_processes_traced", "daemon: processes traced now.")
	daemonWaiting      = desc("tcagent_daemon_processes_waiting", "daemon: Go processes looked at again later: a port selector's not listening on its port yet, or one another tcagent traces.")
	daemonImages       = desc("tcagent_daemon_executables_attached", "daemon: executables with one shared set of uprobes attached.")
	daemonLost         = desc("tcagent_daemon_discovery_lost_total", "daemon: exec and exit events the kernel had no room for.")
	daemonUnattributed = desc("tcagent_daemon_events_unattributed_total", "daemon: events read after their process was let go (in flight when it exited or was ignored), or of another selector's probes on its executable (hit before the process was decided).")
	daemonDecode       = desc("tcagent_daemon_decode_errors_total", "daemon: events read that could not be decoded, or whose probe is not of their process's executable.")
	daemonEventsLost   = desc("tcagent_daemon_events_lost_total", "daemon: events of processes not decided yet (followed from their exec on, before a session counts them) the kernel could not deliver, by reason, as tcagent_events_lost_total.", "reason")
	daemonDecisions    = desc("tcagent_daemon_processes_total", "daemon: processes looked at, by what became of them: traced, not_go, no_match, attach_failed, no_access (its executable unreadable: see the README's privileges), self, held_by_other_agent (another tcagent traces it; taken over once it detaches).", "decision")
	unreadable         = desc("tcagent_reads_unreadable_total", "Values read from the traced process that could not be read or failed a sanity check (a length out of bounds, bytes that are not text, an error or panic value whose type tcagent cannot read), exported as KEY.unreadable or the type name instead, by what: capture, header, error, panic.", "service", "pid", "what")
	joinedTraces       = desc("tcagent_traces_joined_total", "Traces tcagent began that joined the trace the program's own OpenTelemetry SDK began for the same work.", "service", "pid")
	bpfMemory          = desc("tcagent_bpf_memory_bytes", "Kernel memory locked by the agent's BPF maps and ring buffer (the kernel's memlock account of each), charged to the agent's cgroup; sized by the daemon's --ring-buffer-size, --map-entries, --max-processes and --max-probes.")
	propSocket         = desc("tcagent_propagation_socket_total", "--propagate: requests handed to the socket programs, by outcome at the socket: injected, not_http1 (the first write was no HTTP/1.x request line), no_room (the header could not be added); all but injected went out unchanged.", "outcome")
)

// lostReasons are the reasons of tcagent_events_lost_total and
// tcagent_daemon_events_lost_total.
var lostReasons = []string{"ringbuf_full", "goroutine_unreadable", "calls_map_full", "goroutine_marks_full"}

func (h *health) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{eventsRead, eventsLost, decodeErrors, anomalies, openCalls, goroutines, pending, probes, uprobes, retFallbacks,
		probesFailed, badContext, unreadable, progRuns, progTime, spansExported, spansDropped, spansFailed, exportErrors, ready,
		propRequests, propMismatch, propSocket, joinedTraces, propMatched,
		daemonTraced, daemonWaiting, daemonImages, daemonLost, daemonUnattributed, daemonDecode, daemonEventsLost, daemonDecisions, bpfMemory} {
		ch <- d
	}
}

func (h *health) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	sessions := make([]Session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	exports, isReady, socket, dmn, kmem := h.exports, h.ready, h.socket, h.daemon, h.kernelMemory
	h.mu.Unlock()
	if kmem != nil {
		if n, err := kmem(); err == nil {
			ch <- prometheus.MustNewConstMetric(bpfMemory, prometheus.GaugeValue, float64(n))
		}
	}
	if dmn != nil {
		isReady = dmn.Ready()
		st := dmn.Stats()
		ch <- prometheus.MustNewConstMetric(daemonTraced, prometheus.GaugeValue, float64(st.Traced))
		ch <- prometheus.MustNewConstMetric(daemonWaiting, prometheus.GaugeValue, float64(st.Waiting))
		ch <- prometheus.MustNewConstMetric(daemonImages, prometheus.GaugeValue, float64(st.Images))
		ch <- prometheus.MustNewConstMetric(daemonLost, prometheus.CounterValue, float64(st.DiscoveryLost))
		ch <- prometheus.MustNewConstMetric(daemonUnattributed, prometheus.CounterValue, float64(st.Unattributed))
		ch <- prometheus.MustNewConstMetric(daemonDecode, prometheus.CounterValue, float64(st.DecodeErrors))
		for _, reason := range lostReasons {
			ch <- prometheus.MustNewConstMetric(daemonEventsLost, prometheus.CounterValue, float64(st.Lost[reason]), reason)
		}
		for _, k := range []string{"traced", "not_go", "no_match", "attach_failed", "no_access", "self", "held_by_other_agent"} {
			ch <- prometheus.MustNewConstMetric(daemonDecisions, prometheus.CounterValue, float64(st.Decisions[k]), k)
		}
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range sessions {
		st := s.Health()
		l := []string{st.Service, fmt.Sprint(st.PID)}
		with := func(extra string) []string { return append(append([]string(nil), l...), extra) }
		counter(eventsRead, st.Events, l...)
		for _, reason := range lostReasons {
			counter(eventsLost, st.Lost[reason], with(reason)...)
		}
		counter(decodeErrors, st.DecodeErrors, l...)
		for _, kind := range []string{"unknown_probe", "unmatched_end", "lost_end", "events_lost", "panic_unwound", "expired",
			"overflow_calls", "overflow_goroutines", "overflow_pending"} {
			counter(anomalies, st.Anomalies[kind], with(kind)...)
		}
		gauge(openCalls, float64(st.OpenCalls), l...)
		gauge(goroutines, float64(st.Goroutines), l...)
		gauge(pending, float64(st.Pending), l...)
		gauge(probes, float64(st.ProbesAttached), l...)
		gauge(probesFailed, float64(st.ProbesFailed), l...)
		counter(badContext, st.InvalidTraceContext, l...)
		for _, what := range []string{"capture", "header", "error", "panic"} {
			counter(unreadable, st.Unreadable[what], with(what)...)
		}
		counter(joinedTraces, st.TracesJoined, l...)
		gauge(uprobes, float64(st.Uprobes), l...)
		gauge(retFallbacks, float64(st.RetFallbacks), l...)
		if socket != nil {
			for _, outcome := range []string{"handed", "tls", "traceparent_present", "no_tcp_connection", "connection_predates_agent", "not_http1_connection"} {
				counter(propRequests, st.Propagation[outcome], with(outcome)...)
			}
			counter(propMismatch, st.TraceMismatches, l...)
			counter(propMatched, st.PropMatched, l...)
		}
		for _, p := range st.Programs {
			counter(progRuns, p.Runs, with(p.Name)...)
			ch <- prometheus.MustNewConstMetric(progTime, prometheus.CounterValue, p.Runtime.Seconds(), with(p.Name)...)
		}
	}
	var es ExportStats
	if exports != nil {
		es = exports()
	}
	counter(spansExported, es.Exported)
	counter(spansDropped, es.Dropped)
	counter(spansFailed, es.Failed)
	counter(exportErrors, es.ExportErrors)
	if socket != nil {
		if c, err := socket(); err == nil {
			for _, outcome := range []string{"injected", "not_http1", "no_room"} {
				counter(propSocket, c[outcome], outcome)
			}
		}
	}
	r := 0.0
	if isReady {
		r = 1
	}
	gauge(ready, r)
}

// Ready reports whether a traced process has every probe attached, or,
// for the daemon, whether it looked at every process running at its start.
func (m *Metrics) Ready() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.daemon != nil {
		return m.daemon.Ready()
	}
	return m.ready
}

// Serve listens on addr and serves /metrics, /healthz and /readyz until ctx
// is done. It returns once listening, with the address it listens on.
func (m *Metrics) Serve(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !m.Ready() {
			http.Error(w, "not attached yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener is gone; nothing else to do
		}
	}()
	return ln.Addr(), nil
}

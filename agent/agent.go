// Package agent wires the tracing of processes: a Node loads the BPF
// programs and maps once and gives their ring buffer to a reader, which
// routes each process's decoded events to its Session; an Image analyzes
// an executable and attaches the programs to it; a Session feeds its
// process's events through lifecycle → binder → spans → exporter until
// told to stop or the process exits. Attach makes a node and an image for
// one process; the daemon has one node for the host and shares an image
// among the processes of an executable (Node.Load).
package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/binder"
	"github.com/tcagent/tcagent/binder/semconv"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/internal/proc"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
	"github.com/tcagent/tcagent/reader"
)

// Version is tcagent's version, reported in telemetry.distro.version.
var Version = "0.1.0-dev"

// ImageConfig is what an executable's Image is made with: what to trace in
// it. Its Node is made with the same type: the kernel programs' sizes,
// socket side and sampling, and how the ring buffer is read (read once,
// when the node loads). One image serves every process of it that is
// traced.
type ImageConfig struct {
	Specs []probes.Spec
	// Builtin names the built-in probe sets to apply: nil for every set
	// that applies to the binary, empty for none.
	Builtin        []string
	BuiltinOptions builtin.Options
	// Logger receives the image's and its sessions' logs.
	Logger *slog.Logger
	// RingBufferSize in bytes (power of two); 0 for the default. The
	// node's.
	RingBufferSize uint32
	// MapEntries bounds the kernel's per-goroutine maps (bpf.Options); 0
	// for the default. The node's.
	MapEntries uint32
	// MaxProcesses bounds the processes a node traces at once; 0 for the
	// most (bpf.MaxSlots - 1).
	MaxProcesses uint32
	// MaxProbes bounds the probe ids of a node's executables together
	// (each takes its probes, its completions and 2); 0 for
	// bpf.MaxProbes.
	MaxProbes uint32
	// SingleUprobes attaches one uprobe link per offset, as on kernels
	// without uprobe_multi, even where the kernel has it (bpf.Options).
	// For the tests of that path: no flag sets it.
	SingleUprobes bool
	// RetProbes keeps the hot-path probes on the RETs they replace even
	// where their emulated sites are found: goroutine creation on
	// runtime.newproc1's (probes.RuntimeOptions), the http server span's
	// end on serverHandler.ServeHTTP's (builtin.Options). For the tests of
	// that fallback: no flag sets it.
	RetProbes bool
	// PollInterval bounds how long an event waits in the ring buffer
	// before it is read (default 50ms).
	PollInterval time.Duration
	// Propagator, when set (--propagate), is the agent's socket side: the
	// spans' trace contexts are made in the kernel, and outgoing HTTP/1
	// requests carry their client span's. One serves every session.
	Propagator *bpf.Propagator
	// RootSampleRatio is, when set, the share of new traces the sessions'
	// Sampler (or the SDK's default) samples at their root: the traces
	// --propagate makes in the kernel carry the same decision out. Unset:
	// all.
	RootSampleRatio *float64
	// OnUnknownPID is called, for a shared image, from the node's reader
	// with the first event of its probes in a process nobody was told to
	// trace or ignore: the caller decides now (Image.Add or Node.Ignore),
	// so that a process is traced from its exec on.
	OnUnknownPID func(pid int)
}

// SessionConfig is what one traced process's Session is made with: where
// its spans go and how they are described, sampled and bounded.
type SessionConfig struct {
	PID int
	// Processor receives the spans; it is shut down (flushed) on Close.
	Processor sdktrace.SpanProcessor
	// SpanProcessors also see every span (metrics taken from spans).
	SpanProcessors []sdktrace.SpanProcessor
	ServiceName    string
	// Attributes are added to the process's resource (the daemon's
	// Kubernetes metadata, say).
	Attributes []attribute.KeyValue
	// Sampler decides which traces are recorded; nil means parent-based,
	// always on (the CLI always passes the one --sampler and
	// OTEL_TRACES_SAMPLER name).
	Sampler sdktrace.Sampler
	// Limits bound the calls, goroutines and async calls held in memory,
	// and how long a span may stay open.
	Limits lifecycle.Limits
}

// Config is one Attach: an image for one process, and that process's
// session.
type Config struct {
	ImageConfig
	SessionConfig
	// LockDir is where Attach marks the process traced, so that a second
	// agent refuses it (LockProcess); empty for holds.DefaultDir.
	LockDir string
}

// Session is a process being traced: its goroutines' lifecycles, its
// spans and its counts. Its Image holds the probes, alone (Attach) or
// shared with the other processes of the executable.
type Session struct {
	cfg  SessionConfig
	log  *slog.Logger
	img  *Image
	slot uint32 // its kernel counters' slot in the node
	// bias is what the process adds to its executable's link addresses
	// (position-independent executables).
	bias    uint64
	tp      *binder.Provider
	handles []*binder.Handle
	tracker *lifecycle.Tracker
	pidfd   int
	// lock marks the process traced (Attach's sessions); released once
	// the links are closed.
	lock *ProcessLock

	// factories made the spans of the probes' roles and count what their
	// trace contexts say; joins moves tcagent's traces into the program's
	// own (binder.TraceJoin), nil without the otel set.
	factories *binder.Factories
	joins     *binder.TraceJoin
	// dec decodes the process's records; it counts the values read from
	// the process that failed a sanity check.
	dec         *reader.Decoder
	serviceName string
	// final holds the kernel counters read just before the process left
	// the image or the maps were released, so that Stats stays true after.
	final    *bpf.Counters
	finalErr error
	snapshot atomic.Pointer[Stats]
}

// Timings are how long attaching and detaching took.
type Timings struct {
	Analyze time.Duration // reading the binary and compiling the probes
	Load    time.Duration // loading the BPF programs and recipes
	Attach  time.Duration // attaching the uprobes
	Detach  time.Duration // closing the links (set once detached)
}

// Timings returns how long attaching (and, after Run, detaching) took.
func (s *Session) Timings() Timings { return s.img.timings }

// Attach analyzes the process's binary, loads the programs and attaches every
// probe, for this process alone. It changes nothing in the process if it
// fails.
func Attach(cfg Config) (*Session, error) {
	if cfg.Processor == nil {
		return nil, errors.New("no span processor")
	}
	if cfg.PID <= 0 {
		return nil, fmt.Errorf("invalid pid %d", cfg.PID)
	}
	// Marked first: a process another agent traces is not touched.
	lock, err := LockProcess(cfg.LockDir, cfg.PID)
	if err != nil {
		return nil, err
	}
	im, err := analyse(cfg.PID, cfg.ImageConfig, false, nil)
	if err != nil {
		lock.Release()
		return nil, err
	}
	// The node serves this image and this process alone: sized for them.
	ncfg := cfg.ImageConfig
	ncfg.MaxProbes = im.size()
	if ncfg.MaxProcesses == 0 {
		ncfg.MaxProcesses = 1
	}
	t := time.Now()
	n, err := NewNode(ncfg)
	if err != nil {
		im.Close()
		lock.Release()
		return nil, err
	}
	im.timings.Load = time.Since(t)
	err = n.install(im)
	var s *Session
	if err == nil {
		s, err = im.Add(cfg.SessionConfig)
	}
	if err == nil {
		s.pidfd, err = unix.PidfdOpen(cfg.PID, 0)
		if err != nil {
			err = fmt.Errorf("pid %d: watch for exit: %w", cfg.PID, err)
		}
	}
	if err != nil {
		im.Close()
		n.release()
		lock.Release()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

// Probes returns the compiled probes.
func (s *Session) Probes() []*probes.Probe { return s.img.probes }

// Binary returns the traced binary.
func (s *Session) Binary() *probes.Binary { return s.img.bin }

func (s *Session) failedSets() int {
	n := 0
	for _, r := range s.img.reports {
		if !r.Applied && r.Reason != builtin.NotUsed {
			n++
		}
	}
	return n
}

// Builtins reports what became of each built-in probe set.
func (s *Session) Builtins() []builtin.Report { return s.img.reports }

// AttachMode says how probes were attached: "uprobe_multi" or "uprobe".
func (s *Session) AttachMode() string { return s.img.attachMode }

// setupPipeline makes the session's TracerProvider and binds each probe's
// channel to the spans its role asks for: binder makes them, with the
// built-in sets' span code from semconv, which names the process's types
// with typeName.
func (s *Session) setupPipeline(typeName func(uint64) string) error {
	res := s.resource()
	// Spans go through the trace join only where the otel set applies: it
	// takes a lock per span.
	var export sdktrace.SpanProcessor = s.cfg.Processor
	for _, p := range s.img.probes {
		if p.Role.Kind == probes.RoleJoin {
			s.joins = binder.NewTraceJoin(s.cfg.Processor)
			export = s.joins
			break
		}
	}
	po := binder.ProviderOptions{Resource: res, Processors: append([]sdktrace.SpanProcessor{export}, s.cfg.SpanProcessors...),
		Sampler: s.cfg.Sampler}
	s.tp = binder.NewProvider(po)
	tracer := s.tp.NewTracer("github.com/tcagent/tcagent", trace.WithInstrumentationVersion(Version))
	s.factories = &binder.Factories{Tracer: tracer, Join: s.joins}
	s.factories.Side = semconv.New(s.img.facts, typeName, &s.factories.InvalidContext)
	b := binder.New(binder.OTelContext{})
	byID := map[uint32]*lifecycle.Probe{}
	for _, p := range s.img.probes {
		if p.IsCompletion {
			byID[p.ID] = &lifecycle.Probe{Name: p.Spec.Symbol}
			continue
		}
		if p.Recipe.Inject {
			continue // sends no events
		}
		ch := channel.New(p.Spec.SpanName())
		get, opts, err := s.factories.For(ch, p)
		if err != nil {
			for _, h := range s.handles {
				h.Unbind()
			}
			s.tp.Shutdown(context.Background())
			return err
		}
		s.handles = append(s.handles, b.Bind(ch, get, opts))
		lp := &lifecycle.Probe{Channel: ch, Name: p.Spec.SpanName()}
		if a := p.Spec.Async; a != nil {
			lp.Async = lifecycle.Goroutines
			if p.Completion != nil {
				lp.Async, lp.CompletionID = lifecycle.Completion, p.Completion.ID
			}
		}
		byID[p.ID] = lp
	}
	s.tracker = lifecycle.New(byID, s.cfg.Limits)
	return nil
}

// traced makes, for --propagate, the kernel make the trace context of every
// span-opening probe: a CapTrace last among its entry captures.
func traced(p *probes.Probe) error {
	if k := p.Role.Kind; k != probes.RoleSpan && k != probes.RoleSemconv {
		return nil
	}
	if len(p.Recipe.Entry) >= bpf.MaxCaptures {
		return fmt.Errorf("%s: --propagate needs one entry capture of the %d: capture one attribute less", p.Spec.Symbol, bpf.MaxCaptures)
	}
	c := bpf.Capture{Kind: bpf.CapTrace}
	if p.IncomingTrace > 0 {
		c.Reg, c.Slot = uint8(p.IncomingTrace), p.Recipe.Entry[p.IncomingTrace-1].Slot
	}
	if p.Outgoing {
		c.Reg2 = bpf.TraceOutgoing
	}
	p.Recipe.Entry = append(p.Recipe.Entry, c)
	p.Recipe.Trace = true
	return nil
}

// resource describes the traced process. Precedence for service.name: the
// flag, then OTEL_SERVICE_NAME, then OTEL_RESOURCE_ATTRIBUTES, then the
// executable's name; other OTEL_RESOURCE_ATTRIBUTES override what tcagent
// detects.
func (s *Session) resource() *resource.Resource {
	exePath, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.cfg.PID))
	exePath = strings.TrimSuffix(exePath, " (deleted)")
	host, _ := os.Hostname()
	attrs := []attribute.KeyValue{
		attribute.String("service.name", filepath.Base(exePath)),
		attribute.String("service.instance.id", instanceID(host, s.cfg.PID)),
		attribute.Int("process.pid", s.cfg.PID),
		attribute.String("process.executable.name", filepath.Base(exePath)),
		attribute.String("process.executable.path", exePath),
		attribute.String("process.runtime.name", "go"),
		attribute.String("process.runtime.version", s.img.bin.GoVersion),
		attribute.String("host.name", host),
		attribute.String("telemetry.distro.name", "tcagent"),
		attribute.String("telemetry.distro.version", Version),
	}
	if cg, err := proc.Cgroup(s.cfg.PID); err == nil {
		if id := proc.ContainerID(cg); id != "" {
			attrs = append(attrs, attribute.String("container.id", id))
		}
	}
	attrs = append(attrs, s.cfg.Attributes...)
	res := resource.NewWithAttributes("", attrs...)
	if env, err := resource.New(context.Background(), resource.WithFromEnv()); err == nil {
		res, _ = resource.Merge(res, env)
	} else {
		s.log.Warn("OTEL_RESOURCE_ATTRIBUTES ignored", "error", err)
	}
	if s.cfg.ServiceName != "" {
		res, _ = resource.Merge(res, resource.NewWithAttributes("", attribute.String("service.name", s.cfg.ServiceName)))
	}
	if v, ok := res.Set().Value("service.name"); ok {
		s.serviceName = v.AsString()
	}
	return res
}

// instanceID identifies this run of the process: the same for every attach
// to it, different for the next process with the same pid.
func instanceID(host string, pid int) string {
	start, _ := startTime(pid)
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d/%s", host, pid, start)))
	sum[6] = sum[6]&0x0f | 0x50 // a name-based UUID (version 5 layout)
	sum[8] = sum[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

// ProgramStats are the kernel's run statistics of one BPF program, kept
// while kernel.bpf_stats_enabled is 1.
type ProgramStats struct {
	Name    string
	Runs    uint64
	Runtime time.Duration
}

// Stats are the pipeline's counts.
type Stats struct {
	PID            int
	Service        string
	ProbesAttached int
	// ProbesFailed counts built-in sets that apply to the binary but could
	// not be attached (unknown offsets, say).
	ProbesFailed int
	// InvalidTraceContext counts incoming trace context headers ignored as
	// malformed or oversized.
	InvalidTraceContext uint64
	// TraceMismatches counts, with --propagate, spans whose parent was in
	// another trace than the one the kernel made for them.
	TraceMismatches uint64
	// TracesJoined counts traces tcagent began that joined a trace the
	// program's own OpenTelemetry SDK began.
	TracesJoined uint64
	Uprobes      int
	// GoCreateSite names where goroutine creation is probed (the emulated
	// CALL in runtime.newproc.func1, or "runtime.newproc1 RET");
	// RetFallbacks counts the hot-path probes left on single-stepped RETs
	// because their emulated site was not found (logged at attach).
	GoCreateSite string
	RetFallbacks int
	Programs     []ProgramStats
	Time         time.Time // when the counts were taken
	Kernel       bpf.Counters
	// KernelErr is set when the kernel counters could not be read: then
	// Kernel is not to be trusted.
	KernelErr    error
	Lifecycle    lifecycle.Stats
	DecodeErrors uint64
	// Unreadable counts the strings, headers, error messages and panic
	// values read from the process that could not be read or trusted.
	Unreadable reader.UnreadableCounts
	OpenCalls  int
	Goroutines int
	Pending    int
}

// Stats reads the counts so far. Call it from Run's goroutine or after Run.
// In a shared image, Uprobes are the image's (they serve every process of
// it), DecodeErrors and Programs are left out (they are the image's, not
// the process's), and the kernel counters are the process's own.
func (s *Session) Stats() Stats {
	im := s.img
	var k bpf.Counters
	var kerr error
	if s.final != nil {
		k, kerr = *s.final, s.finalErr
	} else {
		k, kerr = im.node.tracer.Counters(s.slot)
	}
	st := Stats{PID: s.cfg.PID, Service: s.serviceName, ProbesAttached: im.nuser, ProbesFailed: s.failedSets(), Uprobes: im.uprobes, Time: time.Now(),
		Kernel: k, KernelErr: kerr, Lifecycle: s.tracker.Stats(),
		OpenCalls: s.tracker.OpenCalls(), Goroutines: s.tracker.Goroutines(), Pending: s.tracker.Pending(),
		TraceMismatches: s.factories.TraceMismatches.Load(), InvalidTraceContext: s.factories.InvalidContext.Load(), Unreadable: s.dec.Unreadable(),
		GoCreateSite: im.rt.GoCreateSite, RetFallbacks: im.retFallbacks()}
	if s.joins != nil {
		st.TracesJoined = s.joins.Joined()
	}
	if im.shared {
		return st
	}
	st.DecodeErrors = im.node.DecodeErrors()
	if !im.closed {
		for _, p := range im.node.Programs() {
			if ps, err := p.Stats(); err == nil {
				info, _ := p.Info()
				name := ""
				if info != nil {
					name = info.Name
				}
				st.Programs = append(st.Programs, ProgramStats{Name: name, Runs: ps.RunCount, Runtime: ps.Runtime})
			}
		}
	}
	return st
}

// Snapshot returns the counts as Run last published them (about once a
// second, and when it returns). Unlike Stats it is safe from any goroutine.
func (s *Session) Snapshot() Stats {
	if st := s.snapshot.Load(); st != nil {
		return *st
	}
	return Stats{PID: s.cfg.PID, Service: s.serviceName, ProbesAttached: s.img.nuser, Uprobes: s.img.uprobes, Time: time.Now(),
		GoCreateSite: s.img.rt.GoCreateSite, RetFallbacks: s.img.retFallbacks()}
}

func (s *Session) publish() {
	st := s.Stats()
	s.snapshot.Store(&st)
}

// Run reads events until ctx is done or the process exits, then detaches,
// ends the spans still open and flushes them. It returns nil in both cases.
// Only a session made by Attach runs itself; the node of a shared image
// runs its sessions (Node.Run).
func (s *Session) Run(ctx context.Context) error {
	if s.img.shared {
		return errors.New("a session of a shared image is run by its node")
	}
	// Wait for the process's exit beside the reader; an eventfd in the same
	// poll lets Run release the waiter when it stops for another reason.
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	exited := make(chan struct{})
	waiterDone := make(chan struct{})
	go func() {
		defer close(waiterDone)
		fds := []unix.PollFd{{Fd: int32(s.pidfd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err != nil && errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || fds[0].Revents != 0 {
				close(exited)
			}
			return
		}
	}()
	defer func() {
		unix.Write(wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		<-waiterDone
		unix.Close(wake)
	}()
	err = s.img.node.rd.Run(ctx, exited)
	reason := lifecycle.EndDetach
	if err == nil && ctx.Err() == nil {
		reason = lifecycle.EndExit
	}
	s.log.Info("detaching", "pid", s.cfg.PID, "reason", reason)
	// No new events once the links are gone; then drain what is buffered.
	s.img.closeLinks()
	s.img.node.rd.Drain()
	s.tracker.EndAll(reason, time.Now())
	s.publish()
	s.logDetached(reason)
	return err
}

func (s *Session) logDetached(reason string) {
	st := s.Stats()
	s.log.Info("detached", "pid", s.cfg.PID, "reason", reason,
		"events", st.Lifecycle.Events, "lost_ringbuf_full", st.Kernel.RingbufFull,
		"lost_goroutine_unreadable", st.Kernel.ReadGFailed, "decode_errors", st.DecodeErrors,
		"unmatched_ends", st.Lifecycle.UnmatchedEnds, "lost_ends", st.Lifecycle.LostEnds,
		"goroutines_reset_for_lost_events", st.Lifecycle.LostGoroutines, "expired", st.Lifecycle.Expired,
		"overflow_calls", st.Lifecycle.OverflowCalls, "overflow_goroutines", st.Lifecycle.OverflowGoroutines,
		"overflow_pending", st.Lifecycle.OverflowPending, "unreadable_values", st.Unreadable)
}

// Close ends the session's spans and flushes them; for a session made by
// Attach it also releases the image. Call it after Run returns.
func (s *Session) Close() error {
	for _, h := range s.handles {
		h.Unbind()
	}
	var err error
	if s.tp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.tp.Shutdown(ctx)
	}
	if !s.img.shared {
		s.img.Close()
		s.img.node.release()
	}
	s.lock.Release()
	s.lock = nil
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
		s.pidfd = -1
	}
	return err
}

// Programs returns the loaded BPF programs.
func (s *Session) Programs() []*ebpf.Program { return s.img.node.Programs() }

// Node returns the programs and maps the session's events come from.
func (s *Session) Node() *Node { return s.img.node }

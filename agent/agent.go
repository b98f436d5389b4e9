// Package agent wires one tracing pipeline per traced process: analyze the
// binary, load and attach the BPF programs, then read the ring buffer and
// feed kernel → lifecycle → binder → spans → exporter until told to stop or
// the process exits.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/binder"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/channel/lifecycle"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// Version is tcagent's version, reported in telemetry.distro.version.
var Version = "0.1.0-dev"

// Config describes one attach.
type Config struct {
	PID   int
	Specs []probes.Spec
	// Processor receives the spans; it is shut down (flushed) on Close.
	Processor   sdktrace.SpanProcessor
	ServiceName string
	Logger      *slog.Logger
	// RingBufferSize in bytes (power of two); 0 for the default.
	RingBufferSize uint32
	// PollInterval bounds how long an event waits in the ring buffer
	// before it is read (default 50ms).
	PollInterval time.Duration
	// Limits bound the calls, goroutines and async calls held in memory,
	// and how long a span may stay open.
	Limits lifecycle.Limits
	// Sampler decides which traces are recorded; nil means the SDK's
	// default, which follows OTEL_TRACES_SAMPLER and _ARG.
	Sampler sdktrace.Sampler
	// SpanProcessors also see every span (metrics taken from spans).
	SpanProcessors []sdktrace.SpanProcessor
	// Builtin names the built-in probe sets to apply: nil for every set
	// that applies to the binary, empty for none.
	Builtin        []string
	BuiltinOptions builtin.Options
	// Propagator, when set (--propagate), is the agent's socket side: the
	// spans' trace contexts are made in the kernel, and outgoing HTTP/1
	// requests carry their client span's. One serves every session.
	Propagator *bpf.Propagator
	// RootSampleRatio is, when set, the share of new traces Sampler (or the
	// SDK's default) samples at their root: the traces --propagate makes in
	// the kernel carry the same decision out. Unset: all.
	RootSampleRatio *float64
}

// Session is a process being traced.
type Session struct {
	cfg     Config
	log     *slog.Logger
	bin     *probes.Binary
	probes  []*probes.Probe // by id; user probes first, then completion probes
	nuser   int
	rt      *probes.RuntimeProbes
	rtBase  uint32 // probe ids of the runtime probes: rtBase (go create/exit), rtBase+1 (panic)
	tracer  *bpf.Tracer
	links   []link.Link
	reader  *ringbuf.Reader
	tp      *sdktrace.TracerProvider
	handles []*binder.Handle
	tracker *lifecycle.Tracker
	pidfd   int
	clock   clock

	decodeErrors atomic.Uint64
	// joins moves tcagent's traces into the program's own (see traceJoin).
	joins *traceJoin
	// traceMismatches counts spans whose parent's trace is not the one the
	// kernel made for them (--propagate).
	traceMismatches atomic.Uint64
	attachMode      string
	serviceName     string
	uprobes         int
	reports         []builtin.Report
	// final holds the kernel counters read just before the maps were
	// released, so that Stats stays true after Close.
	final    *bpf.Counters
	finalErr error
	snapshot atomic.Pointer[Stats]
	timings  Timings
	// scratch receives each event's decoded attributes; the lifecycle
	// copies them into the call's payload.
	scratch [2 * bpf.MaxCaptures]attribute.KeyValue
}

// Timings are how long attaching and detaching took.
type Timings struct {
	Analyze time.Duration // reading the binary and compiling the probes
	Load    time.Duration // loading the BPF programs and recipes
	Attach  time.Duration // attaching the uprobes
	Detach  time.Duration // closing the links (set once detached)
}

// Timings returns how long attaching (and, after Run, detaching) took.
func (s *Session) Timings() Timings { return s.timings }

// Attach analyzes the process's binary, loads the programs and attaches every
// probe. It changes nothing in the process if it fails.
func Attach(cfg Config) (*Session, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.Processor == nil {
		return nil, errors.New("no span processor")
	}
	s := &Session{cfg: cfg, log: cfg.Logger, pidfd: -1}
	attached := false
	defer func() {
		if !attached {
			s.release()
		}
	}()
	var err error

	if cfg.PID <= 0 {
		return nil, fmt.Errorf("invalid pid %d", cfg.PID)
	}
	t0 := time.Now()
	if err := unix.Kill(cfg.PID, 0); errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("no such process: %d", cfg.PID)
	}
	exe := fmt.Sprintf("/proc/%d/exe", cfg.PID)
	if s.bin, err = probes.Open(exe); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("pid %d: insufficient privilege to read its executable: run as root (or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)", cfg.PID)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no such process: %d", cfg.PID)
		}
		return nil, fmt.Errorf("pid %d: %w", cfg.PID, err)
	}
	if s.bin.PIE {
		if s.bin.LoadBias, err = loadBias(cfg.PID, s.bin); err != nil {
			return nil, err
		}
	}
	rt, err := s.bin.Runtime()
	if err != nil {
		return nil, err
	}
	for i, spec := range cfg.Specs {
		p, err := probes.Compile(s.bin, spec, uint32(i), rt)
		if err != nil {
			return nil, err
		}
		s.probes = append(s.probes, p)
	}
	if cfg.Builtin == nil || len(cfg.Builtin) > 0 {
		opts := cfg.BuiltinOptions
		opts.Propagate = cfg.Propagator != nil
		bps, reports, err := builtin.Resolve(s.bin, cfg.Builtin, opts, rt, uint32(len(s.probes)))
		if err != nil {
			return nil, err
		}
		s.reports = reports
		for _, r := range reports {
			if !r.Applied && (cfg.Builtin != nil || r.Reason != builtin.NotUsed) {
				s.log.Warn("built-in probe set skipped", "set", r.Set, "reason", r.Reason)
			} else if r.Applied && r.Reason != "" {
				s.log.Warn("built-in probe set applied in part", "set", r.Set, "missing", r.Reason)
			}
		}
		s.probes = append(s.probes, bps...)
	}
	s.nuser = len(s.probes)
	if s.nuser == 0 {
		return nil, errors.New("nothing to trace: no probes given and no built-in probe set applies")
	}
	if cfg.Propagator != nil {
		for _, p := range s.probes {
			if err := traced(p); err != nil {
				return nil, err
			}
		}
	}
	// One internal probe per completion function, shared by the async
	// probes that name it.
	completions := map[string]*probes.Probe{}
	for _, p := range s.probes[:s.nuser] {
		a := p.Spec.Async
		if a == nil || a.Completion == "" {
			continue
		}
		c := completions[a.Completion]
		if c == nil {
			c = p.Completion // a built-in brings its own
			if c == nil {
				if c, err = probes.CompileCompletion(s.bin, a.Completion, rt); err != nil {
					return nil, fmt.Errorf("%s: %w", p.Spec.Symbol, err)
				}
			}
			c.ID = uint32(len(s.probes))
			completions[a.Completion] = c
			s.probes = append(s.probes, c)
		}
		p.Completion = c
	}
	if s.rt, err = probes.CompileRuntime(s.bin, rt); err != nil {
		return nil, err
	}
	s.rtBase = uint32(len(s.probes))
	if s.pidfd, err = unix.PidfdOpen(cfg.PID, 0); err != nil {
		return nil, fmt.Errorf("pid %d: watch for exit: %w", cfg.PID, err)
	}

	t1 := time.Now()
	s.timings.Analyze = t1.Sub(t0)
	lopts := bpf.Options{RingBufferSize: cfg.RingBufferSize, Propagator: cfg.Propagator}
	if cfg.RootSampleRatio != nil {
		bound := bpf.SampleBoundOf(*cfg.RootSampleRatio)
		lopts.SampleBound = &bound
	}
	if s.tracer, err = bpf.Load(lopts); err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("insufficient privilege to load eBPF programs: run as root (or with CAP_BPF and CAP_PERFMON): %w", err)
		}
		return nil, err
	}
	for _, p := range s.probes {
		if err := s.tracer.SetRecipe(p.ID, p.Recipe); err != nil {
			return nil, err
		}
	}
	if err := s.tracer.SetRecipe(s.rtBase, s.rt.Recipe); err != nil {
		return nil, err
	}
	if err := s.tracer.SetRecipe(s.rtBase+1, s.rt.PanicRecipe); err != nil {
		return nil, err
	}
	if s.reader, err = ringbuf.NewReader(s.tracer.Events()); err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	s.clock = newClock()
	s.setupPipeline()
	t2 := time.Now()
	s.timings.Load = t2.Sub(t1)
	if err := s.attach(exe); err != nil {
		return nil, err
	}
	s.timings.Attach = time.Since(t2)
	attached = true
	return s, nil
}

// Probes returns the compiled probes.
func (s *Session) Probes() []*probes.Probe { return s.probes }

// Binary returns the traced binary.
func (s *Session) Binary() *probes.Binary { return s.bin }

func (s *Session) failedSets() int {
	n := 0
	for _, r := range s.reports {
		if !r.Applied && r.Reason != builtin.NotUsed {
			n++
		}
	}
	return n
}

// Builtins reports what became of each built-in probe set.
func (s *Session) Builtins() []builtin.Report { return s.reports }

// AttachMode says how probes were attached: "uprobe_multi" or "uprobe".
func (s *Session) AttachMode() string { return s.attachMode }

func (s *Session) attach(exe string) error {
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return fmt.Errorf("open %s: %w", exe, err)
	}
	var entryOff, entryCookie, retOff, retCookie []uint64
	for _, p := range s.probes {
		base, err := s.bin.FileOffset(p.Func.Entry)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Spec.Symbol, err)
		}
		entryOff = append(entryOff, base+p.Placement.Entry)
		entryCookie = append(entryCookie, uint64(p.ID))
		if p.Recipe.Inject {
			continue // entry only, no call to follow
		}
		for _, r := range p.Placement.Returns {
			retOff = append(retOff, base+r)
			retCookie = append(retCookie, uint64(p.ID))
		}
	}
	file := func(addrs ...uint64) ([]uint64, error) {
		var offs []uint64
		for _, a := range addrs {
			off, err := s.bin.FileOffset(a)
			if err != nil {
				return nil, err
			}
			offs = append(offs, off)
		}
		return offs, nil
	}
	createOff, err := file(s.rt.GoCreate...)
	if err != nil {
		return fmt.Errorf("runtime.newproc1: %w", err)
	}
	exitOff, err := file(s.rt.GoExit)
	if err != nil {
		return fmt.Errorf("runtime.goexit1: %w", err)
	}
	panicOff, err := file(s.rt.Panic)
	if err != nil {
		return fmt.Errorf("runtime.gopanic: %w", err)
	}
	cookies := func(n int, id uint32) []uint64 {
		cs := make([]uint64, n)
		for i := range cs {
			cs[i] = uint64(id)
		}
		return cs
	}
	s.attachMode = "uprobe"
	if s.tracer.Multi {
		s.attachMode = "uprobe_multi"
	}
	for _, set := range []struct {
		prog     *ebpf.Program
		offs, cs []uint64
	}{
		{s.tracer.EntryProgram(), entryOff, entryCookie},
		{s.tracer.ReturnProgram(), retOff, retCookie},
		{s.tracer.GoCreateProgram(), createOff, cookies(len(createOff), s.rtBase)},
		{s.tracer.GoExitProgram(), exitOff, cookies(1, s.rtBase)},
		{s.tracer.PanicProgram(), panicOff, cookies(1, s.rtBase+1)},
	} {
		if len(set.offs) == 0 {
			continue
		}
		if s.tracer.Multi {
			l, err := ex.UprobeMulti(nil, set.prog, &link.UprobeMultiOptions{Addresses: set.offs, Cookies: set.cs, PID: uint32(s.cfg.PID)})
			if err != nil {
				return fmt.Errorf("attach uprobes to pid %d: %w", s.cfg.PID, err)
			}
			s.links = append(s.links, l)
			s.uprobes += len(set.offs)
			continue
		}
		// Older kernels: one link per offset.
		for i, off := range set.offs {
			l, err := ex.Uprobe("", set.prog, &link.UprobeOptions{Address: off, Cookie: set.cs[i], PID: s.cfg.PID})
			if err != nil {
				return fmt.Errorf("attach uprobe at %#x in pid %d: %w", off, s.cfg.PID, err)
			}
			s.links = append(s.links, l)
			s.uprobes++
		}
	}
	return nil
}

func (s *Session) setupPipeline() {
	res := s.resource()
	// Spans go through the trace join only where the otel set applies: it
	// takes a lock per span.
	var export sdktrace.SpanProcessor = s.cfg.Processor
	for _, p := range s.probes {
		if p.Joins != nil {
			s.joins = newTraceJoin(s.cfg.Processor)
			export = s.joins
			break
		}
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSpanProcessor(export)}
	for _, p := range s.cfg.SpanProcessors {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	if s.cfg.Sampler != nil {
		opts = append(opts, sdktrace.WithSampler(s.cfg.Sampler))
	}
	if s.cfg.Propagator != nil {
		opts = append(opts, sdktrace.WithIDGenerator(binder.NewPayloadIDs()))
	}
	s.tp = sdktrace.NewTracerProvider(opts...)
	tracer := s.tp.Tracer("github.com/tcagent/tcagent", trace.WithInstrumentationVersion(Version))
	b := binder.New(binder.OTelContext{})
	byID := map[uint32]*lifecycle.Probe{}
	for _, p := range s.probes {
		if p.IsCompletion {
			byID[p.ID] = &lifecycle.Probe{Name: p.Spec.Symbol}
			continue
		}
		if p.Recipe.Inject {
			continue // sends no events
		}
		ch := channel.New(p.Spec.SpanName())
		var opts binder.Options
		if p.Spec.CaptureError {
			opts.CaptureError = binder.CaptureAll
		}
		var get binder.GetSpan
		if p.Joins != nil {
			get = enrichEnclosing(ch, nil, s.joinFunc(p.Joins))
		} else if p.Enrich != nil {
			get = enrichEnclosing(ch, p.Enrich, setEndAttributes)
		} else if p.Shape != nil {
			get = shapedFactory(tracer, p.Shape, s.checkTrace)
			opts.BeforeSpanEnd = p.Shape.End
		} else if p.Spec.OpensSpan() {
			get = binder.SpanFactory(tracer, spanKind(p.Spec.Kind))
			opts.BeforeSpanEnd = func(span trace.Span, p *channel.Payload) {
				span.SetAttributes(p.EndAttributes...)
			}
		} else {
			get = enrichEnclosing(ch, func(span trace.Span, p *channel.Payload) { span.SetAttributes(p.Attributes...) }, setEndAttributes)
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
}

// traced makes, for --propagate, the kernel make the trace context of every
// span-opening probe: a CapTrace last among its entry captures.
func traced(p *probes.Probe) error {
	if p.IsCompletion || p.Enrich != nil || p.Recipe.Inject || p.Shape == nil && !p.Spec.OpensSpan() {
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

// checkTrace counts, with --propagate, a span whose parent is in another
// trace than the one the kernel made for it (and a request may have carried
// out): the two disagree. A parent whose trace joined the program's own,
// which the kernel adopted, agrees.
func (s *Session) checkTrace(p *channel.Payload, parent trace.TraceID) {
	if p.TraceID.IsValid() && parent.IsValid() && parent != p.TraceID && (s.joins == nil || s.joins.joinedTo(parent) != p.TraceID) {
		s.traceMismatches.Add(1)
	}
}

// shapedFactory opens the span of a built-in probe: its shaper names it and
// gives its semantic-convention attributes, or opts the call out with no
// name.
func shapedFactory(tracer trace.Tracer, shape probes.Shaper, checkTrace func(*channel.Payload, trace.TraceID)) binder.GetSpan {
	return func(parent trace.Span, p *channel.Payload) trace.Span {
		name, kind, attrs := shape.Start(p)
		if name == "" {
			return nil
		}
		ctx := binder.WithPayloadIDs(context.Background(), p)
		var parentTrace trace.TraceID
		if parent != nil {
			ctx = trace.ContextWithSpan(ctx, parent)
			parentTrace = parent.SpanContext().TraceID()
		} else if rp, ok := shape.(probes.RemoteParenter); ok {
			sc, ok := rp.RemoteParent(p)
			if !ok && p.Caller.IsValid() {
				sc, ok = p.Caller, true
			}
			if ok {
				ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
				parentTrace = sc.TraceID()
			}
		}
		checkTrace(p, parentTrace)
		_, span := tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...), trace.WithTimestamp(p.Time))
		return span
	}
}

type enclosingKey struct{}

// enrichEnclosing is the GetSpan of span:false probes: no span of their own;
// enrich puts their entry captures onto the span active where they were
// called, and the return's captures follow at the end.
func enrichEnclosing(ch *channel.TracingChannel, atStart, atEnd func(trace.Span, *channel.Payload)) binder.GetSpan {
	ch.Subscribe(&channel.Handlers{End: func(p *channel.Payload) {
		if span, ok := p.Value(enclosingKey{}).(trace.Span); ok {
			atEnd(span, p)
		}
	}})
	return func(parent trace.Span, p *channel.Payload) trace.Span {
		if parent != nil {
			if atStart != nil {
				atStart(parent, p)
			}
			p.SetValue(enclosingKey{}, parent)
		}
		return nil
	}
}

func setEndAttributes(span trace.Span, p *channel.Payload) { span.SetAttributes(p.EndAttributes...) }

// joinFunc makes the end of a probe on the program's own OpenTelemetry SDK
// join the trace of the enclosing span to the trace of the span the
// program started (see traceJoin).
func (s *Session) joinFunc(spanOf func(*channel.Payload) (trace.SpanContext, bool)) func(trace.Span, *channel.Payload) {
	return func(enclosing trace.Span, p *channel.Payload) {
		if sc, ok := spanOf(p); ok {
			s.joins.join(enclosing.SpanContext().TraceID(), sc.TraceID())
		}
	}
}

func spanKind(k string) trace.SpanKind {
	switch k {
	case "server":
		return trace.SpanKindServer
	case "client":
		return trace.SpanKindClient
	case "producer":
		return trace.SpanKindProducer
	case "consumer":
		return trace.SpanKindConsumer
	}
	return trace.SpanKindInternal
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
		attribute.String("process.runtime.version", s.bin.GoVersion),
		attribute.String("host.name", host),
		attribute.String("telemetry.distro.name", "tcagent"),
		attribute.String("telemetry.distro.version", Version),
	}
	if id := ContainerID(s.cfg.PID); id != "" {
		attrs = append(attrs, attribute.String("container.id", id))
	}
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
	start := ""
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Field 22, after the parenthesised command name.
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 19 {
				start = f[19]
			}
		}
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d/%s", host, pid, start)))
	sum[6] = sum[6]&0x0f | 0x50 // a name-based UUID (version 5 layout)
	sum[8] = sum[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

var containerIDRE = regexp.MustCompile(`[0-9a-f]{64}`)

// ContainerID reads the id of the container pid runs in from its cgroup
// path (docker, containerd, CRI-O and podman put it there), "" when it is
// not in one.
func ContainerID(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	var id string
	for _, line := range strings.Split(string(data), "\n") {
		if ids := containerIDRE.FindAllString(line, -1); len(ids) > 0 {
			id = ids[len(ids)-1]
		}
	}
	return id
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
	Programs     []ProgramStats
	Time         time.Time // when the counts were taken
	Kernel       bpf.Counters
	// KernelErr is set when the kernel counters could not be read: then
	// Kernel is not to be trusted.
	KernelErr    error
	Lifecycle    lifecycle.Stats
	DecodeErrors uint64
	OpenCalls    int
	Goroutines   int
	Pending      int
}

// Stats reads the counts so far. Call it from Run's goroutine or after Run.
func (s *Session) Stats() Stats {
	var k bpf.Counters
	var kerr error
	if s.final != nil {
		k, kerr = *s.final, s.finalErr
	} else {
		k, kerr = s.tracer.Counters()
	}
	st := Stats{PID: s.cfg.PID, Service: s.serviceName, ProbesAttached: s.nuser, ProbesFailed: s.failedSets(), Uprobes: s.uprobes, Time: time.Now(),
		Kernel: k, KernelErr: kerr, Lifecycle: s.tracker.Stats(), DecodeErrors: s.decodeErrors.Load(),
		OpenCalls: s.tracker.OpenCalls(), Goroutines: s.tracker.Goroutines(), Pending: s.tracker.Pending(),
		TraceMismatches: s.traceMismatches.Load()}
	if s.joins != nil {
		st.TracesJoined = s.joins.joined.Load()
	}
	for _, p := range s.probes {
		if rp, ok := p.Shape.(probes.RemoteParenter); ok {
			st.InvalidTraceContext += rp.InvalidTraceContext()
		}
	}
	if s.final == nil {
		for _, p := range s.Programs() {
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
	return Stats{PID: s.cfg.PID, Service: s.serviceName, ProbesAttached: s.nuser, Uprobes: s.uprobes, Time: time.Now()}
}

func (s *Session) publish() {
	st := s.Stats()
	s.snapshot.Store(&st)
}

// Run reads events until ctx is done or the process exits, then detaches,
// ends the spans still open and flushes them. It returns nil in both cases.
func (s *Session) Run(ctx context.Context) error {
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
	var rec ringbuf.Record
	var ev bpf.Event
	reason := lifecycle.EndDetach
	nextExpire := time.Now().Add(time.Second)
	for running := true; running; {
		if now := time.Now(); now.After(nextExpire) {
			s.tracker.Expire(now)
			s.publish()
			nextExpire = now.Add(time.Second)
		}
		select {
		case <-ctx.Done():
			running = false
		case <-exited:
			reason = lifecycle.EndExit
			running = false
		default:
		}
		if !running {
			break
		}
		s.reader.SetDeadline(time.Now().Add(s.cfg.PollInterval))
		if err := s.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		s.handle(rec.RawSample, &ev)
	}
	s.log.Info("detaching", "pid", s.cfg.PID, "reason", reason)
	// No new events once the links are gone; then drain what is buffered.
	s.closeLinks()
	s.reader.SetDeadline(time.Now())
	for {
		if err := s.reader.ReadInto(&rec); err != nil {
			break
		}
		s.handle(rec.RawSample, &ev)
	}
	s.tracker.EndAll(reason, time.Now())
	s.publish()
	st := s.Stats()
	s.log.Info("detached", "pid", s.cfg.PID,
		"events", st.Lifecycle.Events, "lost_ringbuf_full", st.Kernel.RingbufFull,
		"lost_goroutine_unreadable", st.Kernel.ReadGFailed, "decode_errors", st.DecodeErrors,
		"unmatched_ends", st.Lifecycle.UnmatchedEnds, "lost_ends", st.Lifecycle.LostEnds,
		"goroutines_reset_for_lost_events", st.Lifecycle.LostGoroutines, "expired", st.Lifecycle.Expired,
		"overflow_calls", st.Lifecycle.OverflowCalls, "overflow_goroutines", st.Lifecycle.OverflowGoroutines,
		"overflow_pending", st.Lifecycle.OverflowPending)
	return nil
}

// handle takes one ring-buffer record through decoding and the lifecycle;
// ev is reused from record to record.
func (s *Session) handle(raw []byte, ev *bpf.Event) {
	if err := ev.Decode(raw); err != nil {
		s.decodeErrors.Add(1)
		return
	}
	le := lifecycle.Event{Time: s.clock.wall(ev.Time), Goroutine: ev.Goroutine, Depth: ev.Depth, Probe: ev.Probe, Lost: ev.Lost}
	switch ev.Kind {
	case bpf.KindGoCreate:
		le.Kind, le.Child = lifecycle.GoCreate, ev.Values[0].A
		s.tracker.Handle(&le)
		return
	case bpf.KindGoExit:
		le.Kind = lifecycle.GoExit
		s.tracker.Handle(&le)
		return
	case bpf.KindPanic:
		le.Kind, le.PanicMessage = lifecycle.Panic, "panic: "+probes.PanicValue(ev, s.bin)
		s.tracker.Handle(&le)
		return
	}
	if int(ev.Probe) >= len(s.probes) {
		s.decodeErrors.Add(1)
		return
	}
	p := s.probes[ev.Probe]
	switch ev.Kind {
	case bpf.KindStart:
		le.Kind = lifecycle.Start
		if len(p.EntryAttrs) > 0 {
			le.Attributes = p.Attributes(ev, true, s.scratch[:0], s.bin)
		}
		if i := len(p.Recipe.Entry) - 1; p.Recipe.Trace && i < ev.NValues {
			v := ev.Values[i]
			binary.BigEndian.PutUint64(le.TraceID[:8], v.A)
			binary.BigEndian.PutUint64(le.TraceID[8:], v.B)
			binary.BigEndian.PutUint64(le.SpanID[:], v.C)
			if v.D != 0 { // the client span the kernel matched by connection
				var caller trace.SpanContextConfig
				caller.TraceID, caller.TraceFlags, caller.Remote = le.TraceID, trace.TraceFlags(ev.TraceFlags), true
				binary.BigEndian.PutUint64(caller.SpanID[:], v.D)
				le.Caller = trace.NewSpanContext(caller)
			}
		}
		if p.ReceiverCapture >= 0 && p.ReceiverCapture < ev.NValues {
			le.Handle = ev.Values[p.ReceiverCapture].A
		}
	case bpf.KindEnd:
		le.Kind = lifecycle.End
		if len(p.ReturnAttrs) > 0 {
			le.Attributes = p.Attributes(ev, false, s.scratch[:0], s.bin)
		}
		if e := p.Error(ev, s.bin); e != nil {
			if p.ErrorOf == nil {
				le.Err = e
			} else if err := p.ErrorOf(e, le.Attributes); err != nil {
				le.Err = err
			}
		}
		if p.HandleCapture >= 0 && p.HandleCapture < ev.NValues {
			le.Handle = ev.Values[p.HandleCapture].A
		}
	default:
		s.decodeErrors.Add(1)
		return
	}
	s.tracker.Handle(&le)
}

func (s *Session) closeLinks() {
	if len(s.links) == 0 {
		return
	}
	// Releasing a link waits for the kernel's grace period: closing the
	// links together lets those waits overlap.
	t := time.Now()
	var wg sync.WaitGroup
	for _, l := range s.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Close()
		}()
	}
	wg.Wait()
	s.links = nil
	s.timings.Detach = time.Since(t)
}

// Close releases everything and flushes the spans. Run calls nothing of it;
// call Close after Run returns.
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
	s.release()
	return err
}

func (s *Session) release() {
	s.closeLinks()
	if s.reader != nil {
		s.reader.Close()
	}
	if s.tracer != nil {
		k, err := s.tracer.Counters()
		s.final, s.finalErr = &k, err
		s.tracer.Close()
	}
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
	}
	if s.bin != nil {
		s.bin.Close()
	}
}

// clock converts the kernel's CLOCK_MONOTONIC event times to wall time.
type clock struct{ offset int64 }

func newClock() clock {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return clock{offset: time.Now().UnixNano() - ts.Nano()}
}

func (c clock) wall(mono uint64) time.Time { return time.Unix(0, int64(mono)+c.offset) }

// loadBias finds where a PIE binary's text was mapped.
func loadBias(pid int, b *probes.Binary) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d: read maps: %w", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[2] != "00000000" {
			continue
		}
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.TrimSuffix(target, " (deleted)") != f[5] {
			continue
		}
		start, err := strconv.ParseUint(strings.Split(f[0], "-")[0], 16, 64)
		if err != nil {
			continue
		}
		return b.LoadBiasAt(start), nil
	}
	return 0, fmt.Errorf("pid %d: cannot find where %s is mapped", pid, b.Path)
}

// Programs returns the loaded BPF programs.
func (s *Session) Programs() []*ebpf.Program {
	return []*ebpf.Program{s.tracer.EntryProgram(), s.tracer.ReturnProgram(), s.tracer.GoCreateProgram(), s.tracer.GoExitProgram(), s.tracer.PanicProgram()}
}

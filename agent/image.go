package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/binder/semconv"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/internal/proc"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
	"github.com/tcagent/tcagent/reader"
)

// Image is one executable analysed, its programs loaded and its uprobes
// attached, with the processes running it that are traced: the Sessions.
//
// A private image (Attach) serves one process, its links filtered to that
// pid by the kernel. A shared image (LoadShared) serves every process of
// the executable the daemon admits: its links have no PID filter, so the
// uprobes sit in every process that maps the file, and the programs follow
// only the admitted ones (bpf.Options.FilterPIDs). A process of the file
// not decided yet is followed too, and its first event asks the daemon
// (OnUnknownPID), so that a process is traced from its exec on even before
// the daemon heard of the exec.
type Image struct {
	cfg    ImageConfig
	pid    int // the process the image was loaded from (Attach: the only one)
	shared bool
	log    *slog.Logger
	bin    *probes.Binary
	ownBin bool // the image opened bin and closes it
	// probes by id: user probes first, then built-ins, then completions.
	probes  []*probes.Probe
	nuser   int
	rt      *probes.RuntimeProbes
	rtBase  uint32 // probe ids of the runtime probes: rtBase (go create/exit), rtBase+1 (panic)
	reports []builtin.Report
	facts   semconv.Facts // read before bin is compacted (compact.go)
	// errorOf says, by probe id, what a probe's returned errors mean (a
	// built-in's rule); the reader's decoders apply it.
	errorOf []reader.ErrorMeaning
	tracer  *bpf.Tracer
	links   []link.Link
	rd      *reader.Reader
	clock   reader.Clock

	attachMode string
	uprobes    int
	timings    Timings

	// sessions maps pids to their Session (the reader routes each pid's
	// records to its session's lifecycle); guarded by mu, with slots.
	sessions map[uint32]*Session
	mu       sync.Mutex
	slots    []uint32 // free counter slots (shared)
	nextSlot uint32
	// closing sessions flush in the background; Close waits for them.
	closing sync.WaitGroup

	released bool
}

type removal struct {
	pid uint32
	// s is the session to end; nil to forget a process never traced. A
	// session that is not s (a new process with the pid) stays.
	s    *Session
	done func(*Session)
}

// LoadShared analyses the executable of process pid and attaches one set
// of uprobes to the file for every process of it the caller admits with
// Add. bin, when not nil, is that executable already analysed (by a cache
// the caller keeps; the image does not close it). Run reads the events.
func LoadShared(pid int, cfg ImageConfig, bin *probes.Binary) (*Image, error) {
	return load(pid, cfg, true, bin)
}

func load(pid int, cfg ImageConfig, shared bool, bin *probes.Binary) (*Image, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	im := &Image{cfg: cfg, pid: pid, shared: shared, log: cfg.Logger, bin: bin, sessions: map[uint32]*Session{}, nextSlot: 1}
	ok := false
	defer func() {
		if !ok {
			im.release()
		}
	}()
	defer im.compact() // before release: a failed image leaves a cached binary compact too
	if pid <= 0 {
		return nil, fmt.Errorf("invalid pid %d", pid)
	}
	t0 := time.Now()
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("no such process: %d", pid)
	}
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	var err error
	if im.bin == nil {
		if im.bin, err = OpenBinary(pid); err != nil {
			return nil, err
		}
		im.ownBin = true
	}
	rt, err := im.bin.Runtime()
	if err != nil {
		return nil, err
	}
	if err := im.compile(rt); err != nil {
		return nil, err
	}
	t1 := time.Now()
	im.timings.Analyze = t1.Sub(t0)
	lopts := bpf.Options{RingBufferSize: cfg.RingBufferSize, Propagator: cfg.Propagator, FilterPIDs: shared,
		MapEntries: cfg.MapEntries, Probes: im.rtBase + 2, Slots: cfg.MaxProcesses, SingleUprobes: cfg.SingleUprobes}
	if cfg.RootSampleRatio != nil {
		bound := bpf.SampleBoundOf(*cfg.RootSampleRatio)
		lopts.SampleBound = &bound
	}
	if im.tracer, err = bpf.Load(lopts); err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("insufficient privilege to load eBPF programs: run as root (or with CAP_BPF and CAP_PERFMON): %w", err)
		}
		return nil, err
	}
	for _, p := range im.probes {
		if err := im.tracer.SetRecipe(p.ID, p.Recipe); err != nil {
			return nil, err
		}
	}
	if err := im.tracer.SetRecipe(im.rtBase, im.rt.Recipe); err != nil {
		return nil, err
	}
	if err := im.tracer.SetRecipe(im.rtBase+1, im.rt.PanicRecipe); err != nil {
		return nil, err
	}
	rb, err := ringbuf.NewReader(im.tracer.Events())
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	ropts := reader.Options{PollInterval: cfg.PollInterval, Tick: im.tick}
	if shared && cfg.OnUnknownPID != nil {
		ropts.OnUnknownPID = func(pid uint32) { cfg.OnUnknownPID(int(pid)) }
	}
	im.rd = reader.New(rb, ropts)
	im.clock = reader.NewClock()
	t2 := time.Now()
	im.timings.Load = t2.Sub(t1)
	if err := im.attach(exe); err != nil {
		return nil, err
	}
	im.timings.Attach = time.Since(t2)
	ok = true
	return im, nil
}

// OpenBinary opens the executable process pid runs, for analysis, with
// the errors a user can act on.
func OpenBinary(pid int) (*probes.Binary, error) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	bin, err := probes.Open(exe)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("pid %d: insufficient privilege to read its executable: run as root (or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)", pid)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no such process: %d", pid)
		}
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	if bin.PIE {
		if bin.LoadBias, err = loadBias(pid, bin); err != nil {
			bin.Close()
			return nil, err
		}
	}
	return bin, nil
}

// compile turns the specs and the built-in sets into probes of this binary.
func (im *Image) compile(rt probes.Runtime) error {
	cfg := im.cfg
	for i, spec := range cfg.Specs {
		p, err := probes.Compile(im.bin, spec, uint32(i), rt)
		if err != nil {
			return err
		}
		im.probes = append(im.probes, p)
	}
	if cfg.Builtin == nil || len(cfg.Builtin) > 0 {
		opts := cfg.BuiltinOptions
		opts.Propagate = cfg.Propagator != nil
		opts.RetProbes = cfg.RetProbes
		bps, reports, err := builtin.Resolve(im.bin, cfg.Builtin, opts, rt, uint32(len(im.probes)))
		if err != nil {
			return err
		}
		im.reports = reports
		for _, r := range reports {
			if !r.Applied && (cfg.Builtin != nil || r.Reason != builtin.NotUsed) {
				im.log.Warn("built-in probe set skipped", "set", r.Set, "reason", r.Reason)
			} else if r.Applied && r.Reason != "" {
				im.log.Warn("built-in probe set applied in part", "set", r.Set, "missing", r.Reason)
			}
		}
		im.probes = append(im.probes, bps...)
		for _, p := range bps {
			if p.EndFallback != "" {
				im.log.Warn("call ends probed at the RETs, single-stepped on every call", "probe", p.Spec.Symbol, "reason", p.EndFallback)
			}
		}
	}
	im.nuser = len(im.probes)
	if im.nuser == 0 {
		return errors.New("nothing to trace: no probes given and no built-in probe set applies")
	}
	if cfg.Propagator != nil {
		for _, p := range im.probes {
			if err := traced(p); err != nil {
				return err
			}
		}
	}
	// One internal probe per completion function, shared by the async
	// probes that name it.
	completions := map[string]*probes.Probe{}
	for _, p := range im.probes[:im.nuser] {
		a := p.Spec.Async
		if a == nil || a.Completion == "" {
			continue
		}
		c := completions[a.Completion]
		if c == nil {
			c = p.Completion // a built-in brings its own
			if c == nil {
				var err error
				if c, err = probes.CompileCompletion(im.bin, a.Completion, rt, nil); err != nil {
					return fmt.Errorf("%s: %w", p.Spec.Symbol, err)
				}
			}
			c.ID = uint32(len(im.probes))
			completions[a.Completion] = c
			im.probes = append(im.probes, c)
		}
		p.Completion = c
	}
	var err error
	if im.rt, err = probes.CompileRuntime(im.bin, rt, probes.RuntimeOptions{RetGoCreate: cfg.RetProbes}); err != nil {
		return err
	}
	if im.rt.GoCreateFallback != "" {
		im.log.Warn("goroutine creation probed at runtime.newproc1's RETs, single-stepped on every go statement", "reason", im.rt.GoCreateFallback)
	}
	im.rtBase = uint32(len(im.probes))
	im.errorOf = errorMeanings(im.probes)
	return nil
}

// errorMeanings lists, by probe id, what the span side of each probe's
// role says a returned error means (nil: an error is a failure, as read).
func errorMeanings(ps []*probes.Probe) []reader.ErrorMeaning {
	m := make([]reader.ErrorMeaning, len(ps))
	for _, p := range ps {
		if int(p.ID) < len(m) {
			if of := semconv.ErrorOf(p.Role); of != nil {
				m[p.ID] = of
			}
		}
	}
	return m
}

func (im *Image) attach(exe string) error {
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return fmt.Errorf("open %s: %w", exe, err)
	}
	file := func(addrs ...uint64) ([]uint64, error) {
		var offs []uint64
		for _, a := range addrs {
			off, err := im.bin.FileOffset(a)
			if err != nil {
				return nil, err
			}
			offs = append(offs, off)
		}
		return offs, nil
	}
	cookies := func(n int, id uint32) []uint64 {
		cs := make([]uint64, n)
		for i := range cs {
			cs[i] = uint64(id)
		}
		return cs
	}
	var entryOff, entryCookie, retOff, retCookie, endOff, endCookie []uint64
	for _, p := range im.probes {
		base, err := im.bin.FileOffset(p.Func.Entry)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Spec.Symbol, err)
		}
		entryOff = append(entryOff, base+p.Placement.Entry)
		entryCookie = append(entryCookie, uint64(p.ID))
		if p.Recipe.Inject {
			continue // entry only, no call to follow
		}
		if len(p.Ends) > 0 {
			ends, err := file(p.Ends...)
			if err != nil {
				return fmt.Errorf("%s: %w", p.Spec.Symbol, err)
			}
			endOff = append(endOff, ends...)
			endCookie = append(endCookie, cookies(len(ends), p.ID)...)
			continue
		}
		for _, r := range p.Placement.Returns {
			retOff = append(retOff, base+r)
			retCookie = append(retCookie, uint64(p.ID))
		}
	}
	createOff, err := file(im.rt.GoCreate...)
	if err != nil {
		return fmt.Errorf("runtime.newproc1: %w", err)
	}
	createCallOff, err := file(im.rt.GoCreateCall...)
	if err != nil {
		return fmt.Errorf("runtime.newproc1: %w", err)
	}
	createEntryOff, err := file(im.rt.GoCreateEntry...)
	if err != nil {
		return fmt.Errorf("runtime.newproc1: %w", err)
	}
	exitOff, err := file(im.rt.GoExit)
	if err != nil {
		return fmt.Errorf("runtime.goexit1: %w", err)
	}
	panicOff, err := file(im.rt.Panic)
	if err != nil {
		return fmt.Errorf("runtime.gopanic: %w", err)
	}
	im.attachMode = "uprobe"
	if im.tracer.Multi {
		im.attachMode = "uprobe_multi"
	}
	// A private image's links fire in its process only; a shared image's
	// in every process of the file.
	pid := im.pid
	if im.shared {
		pid = 0
	}
	for _, set := range []struct {
		prog     *ebpf.Program
		offs, cs []uint64
	}{
		{im.tracer.EntryProgram(), entryOff, entryCookie},
		{im.tracer.ReturnProgram(), retOff, retCookie},
		{im.tracer.CallEndProgram(), endOff, endCookie},
		// Go 1.19/1.20: before newproc1 runs, for its returns to pair with.
		{im.tracer.GoCreateEntryProgram(), createEntryOff, cookies(len(createEntryOff), im.rtBase)},
		{im.tracer.GoCreateProgram(), createOff, cookies(len(createOff), im.rtBase)},
		{im.tracer.GoCreateCallProgram(), createCallOff, cookies(len(createCallOff), im.rtBase)},
		{im.tracer.GoExitProgram(), exitOff, cookies(1, im.rtBase)},
		{im.tracer.PanicProgram(), panicOff, cookies(1, im.rtBase+1)},
	} {
		if len(set.offs) == 0 {
			continue
		}
		if im.tracer.Multi {
			l, err := ex.UprobeMulti(nil, set.prog, &link.UprobeMultiOptions{Addresses: set.offs, Cookies: set.cs, PID: uint32(pid)})
			if err != nil {
				return fmt.Errorf("attach uprobes to %s: %w", im.target(), err)
			}
			im.links = append(im.links, l)
			im.uprobes += len(set.offs)
			continue
		}
		// Older kernels: one link per offset.
		for i, off := range set.offs {
			l, err := ex.Uprobe("", set.prog, &link.UprobeOptions{Address: off, Cookie: set.cs[i], PID: pid})
			if err != nil {
				return fmt.Errorf("attach uprobe at %#x in %s: %w", off, im.target(), err)
			}
			im.links = append(im.links, l)
			im.uprobes++
		}
	}
	return nil
}

func (im *Image) target() string {
	if im.shared {
		return im.bin.Path
	}
	return "pid " + strconv.Itoa(im.pid)
}

// Add starts tracing process cfg.PID, which runs the image's executable
// (the caller checked): from now on its events become spans through
// cfg.Processor.
func (im *Image) Add(cfg SessionConfig) (*Session, error) {
	if cfg.Processor == nil {
		return nil, errors.New("no span processor")
	}
	s := &Session{cfg: cfg, log: im.log, img: im, pidfd: -1}
	if err := s.setupPipeline(); err != nil {
		return nil, err
	}
	s.dec = reader.NewDecoder(reader.DecoderConfig{Probes: im.probes, Target: im.bin, Clock: im.clock, ErrorOf: im.errorOf})
	pid := uint32(cfg.PID)
	im.mu.Lock()
	defer im.mu.Unlock()
	if _, dup := im.sessions[pid]; dup {
		return nil, fmt.Errorf("pid %d: already traced", cfg.PID)
	}
	if im.shared {
		switch {
		case len(im.slots) > 0:
			s.slot, im.slots = im.slots[len(im.slots)-1], im.slots[:len(im.slots)-1]
		case im.nextSlot < im.tracer.Slots():
			s.slot = im.nextSlot
			im.nextSlot++
		default:
			return nil, fmt.Errorf("pid %d: %s already serves %d processes", cfg.PID, im.bin.Path, im.tracer.Slots()-1)
		}
		if err := im.tracer.AdmitPID(pid, s.slot); err != nil {
			im.slots = append(im.slots, s.slot)
			return nil, err
		}
	}
	im.sessions[pid] = s
	im.rd.Route(pid, s.dec, s.tracker)
	return s, nil
}

// Ignore makes a shared image's programs do nothing in process pid, which
// runs its executable but is not to be traced.
func (im *Image) Ignore(pid int) error { return im.tracer.IgnorePID(uint32(pid)) }

// Forget drops what a shared image knows of a process that exited and was
// never traced (once the reader is past its last events). Run must be
// running. It does not block.
func (im *Image) Forget(pid int) {
	im.rd.Later(func() { im.finish(removal{pid: uint32(pid)}, lifecycle.EndExit) })
}

// Remove ends session s, whose process exited: once the events it left in
// the ring buffer are read its open spans end, then its spans are flushed
// and done is called (from another goroutine) with the session. Run must
// be running. It does not block.
func (im *Image) Remove(s *Session, done func(*Session)) {
	r := removal{pid: uint32(s.cfg.PID), s: s, done: done}
	im.rd.Later(func() { im.finish(r, lifecycle.EndExit) })
}

// Sessions returns how many processes the image traces.
func (im *Image) Sessions() int {
	im.mu.Lock()
	defer im.mu.Unlock()
	return len(im.sessions)
}

// current returns the sessions traced now.
func (im *Image) current() []*Session {
	im.mu.Lock()
	defer im.mu.Unlock()
	ss := make([]*Session, 0, len(im.sessions))
	for _, s := range im.sessions {
		ss = append(ss, s)
	}
	return ss
}

// tick, from the reader about once a second, ends the sessions' calls that
// waited too long and publishes their counts.
func (im *Image) tick(now time.Time) {
	for _, s := range im.current() {
		s.tracker.Expire(now)
		s.publish()
	}
}

// Uprobes returns how many uprobe offsets the image attached.
func (im *Image) Uprobes() int { return im.uprobes }

// retFallbacks counts the hot-path probes on single-stepped RETs for want
// of their emulated site: goroutine creation's, and the built-in probes'
// that have one (the http server's end).
func (im *Image) retFallbacks() int {
	n := 0
	if im.rt.GoCreateFallback != "" {
		n++
	}
	for _, p := range im.probes {
		if p.EndFallback != "" {
			n++
		}
	}
	return n
}

// Unattributed counts events read that belonged to no traced process.
func (im *Image) Unattributed() uint64 { return im.rd.Unattributed() }

// Run reads a shared image's events until ctx is done, then detaches its
// uprobes and ends every session's open spans.
func (im *Image) Run(ctx context.Context) error {
	err := im.rd.Run(ctx, nil)
	im.closeLinks()
	im.rd.Drain() // and ends the processes removed meanwhile
	for _, s := range im.current() {
		im.finish(removal{pid: uint32(s.cfg.PID), s: s}, lifecycle.EndDetach)
	}
	return err
}

// Close waits for the sessions to flush and releases the programs; call it
// after Run returned.
func (im *Image) Close() error {
	im.closing.Wait()
	im.release()
	return nil
}

// finish ends a removed process's session, from the reader's goroutine
// once its last records are read: its open spans end for reason, its
// counters are kept, the kernel and the reader forget it, and its spans
// are flushed in the background.
func (im *Image) finish(r removal, reason string) {
	im.mu.Lock()
	s := im.sessions[r.pid]
	if s != r.s {
		// A new process with the pid, admitted meanwhile: it stays.
		im.mu.Unlock()
		if r.done != nil {
			r.done(r.s)
		}
		return
	}
	delete(im.sessions, r.pid)
	im.rd.Forget(r.pid)
	im.mu.Unlock()
	if im.shared {
		im.tracer.ForgetPID(r.pid)
	}
	if s == nil {
		if r.done != nil {
			r.done(nil)
		}
		return
	}
	s.tracker.EndAll(reason, time.Now())
	k, err := im.tracer.Counters(s.slot)
	s.final, s.finalErr = &k, err
	s.publish()
	s.logDetached(reason)
	if im.shared {
		im.mu.Lock()
		im.slots = append(im.slots, s.slot)
		im.mu.Unlock()
	}
	im.closing.Add(1)
	go func() {
		defer im.closing.Done()
		if err := s.Close(); err != nil {
			im.log.Warn("flushing spans", "pid", r.pid, "error", err)
		}
		if r.done != nil {
			r.done(s)
		}
	}()
}

func (im *Image) closeLinks() {
	if len(im.links) == 0 {
		return
	}
	// Releasing a link waits for the kernel's grace period: closing the
	// links together lets those waits overlap.
	t := time.Now()
	var wg sync.WaitGroup
	for _, l := range im.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Close()
		}()
	}
	wg.Wait()
	im.links = nil
	im.timings.Detach = time.Since(t)
}

func (im *Image) release() {
	if im.released {
		return
	}
	im.released = true
	im.closeLinks()
	if im.rd != nil {
		im.rd.Close()
	}
	if im.tracer != nil {
		for _, s := range im.sessions {
			if s.final == nil {
				k, err := im.tracer.Counters(s.slot)
				s.final, s.finalErr = &k, err
			}
		}
		im.tracer.Close()
	}
	if im.bin != nil && im.ownBin {
		im.bin.Close()
	}
}

// Programs returns the loaded BPF programs.
func (im *Image) Programs() []*ebpf.Program {
	t := im.tracer
	return []*ebpf.Program{t.EntryProgram(), t.ReturnProgram(), t.CallEndProgram(), t.GoCreateEntryProgram(), t.GoCreateProgram(), t.GoCreateCallProgram(), t.GoExitProgram(), t.PanicProgram()}
}

// loadBias finds where a PIE binary's text was mapped.
func loadBias(pid int, b *probes.Binary) (uint64, error) {
	start, err := proc.MappedAt(pid)
	if err != nil {
		return 0, err
	}
	return b.LoadBiasAt(start), nil
}

// Timings returns how long analysing, loading and attaching (and, once
// detached, detaching) took.
func (im *Image) Timings() Timings { return im.timings }

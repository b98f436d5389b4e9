package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/binder/semconv"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/internal/proc"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
	"github.com/tcagent/tcagent/reader"
)

// Image is one executable analysed, with its probes' recipes in a range
// of its Node's probe ids and its uprobes attached, serving the processes
// running it that are traced: the Sessions.
//
// A private image (Attach) serves one process, its links filtered to that
// pid by the kernel. A shared image (Node.Load) serves every process of
// the executable the daemon admits: its links have no PID filter, so the
// uprobes sit in every process that maps the file, whatever address ASLR
// chose for it, and the programs follow only the admitted ones. A process
// of the file not decided yet is followed too, and its first event asks
// the daemon (OnUnknownPID), so that a process is traced from its exec on
// even before the daemon heard of the exec.
type Image struct {
	cfg    ImageConfig
	node   *Node
	pid    int // the process the image was loaded from (Attach: the only one)
	shared bool
	log    *slog.Logger
	bin    *probes.Binary
	ownBin bool // the image opened bin and closes it
	// probes by id: user probes first, then built-ins, then completions;
	// the kernel knows probe id i as base+i.
	probes  []*probes.Probe
	base    uint32
	nuser   int
	rt      *probes.RuntimeProbes
	rtBase  uint32 // probe ids of the runtime probes: rtBase (go create/exit), rtBase+1 (panic)
	reports []builtin.Report
	facts   semconv.Facts // read before bin is compacted (compact.go)
	// errorOf says, by probe id, what a probe's returned errors mean (a
	// built-in's rule); the reader's decoders apply it.
	errorOf []reader.ErrorMeaning
	links   []link.Link
	linksMu sync.Mutex

	attachMode string
	uprobes    int
	timings    Timings

	// nsessions counts the processes traced (guarded by node.mu).
	nsessions int
	closed    bool
}

// Load analyses the executable of process pid and attaches one set of
// uprobes to the file for every process of it the caller admits with Add.
// bin, when not nil, is that executable already analysed (by a cache the
// caller keeps; the image does not close it). The node's Run reads the
// events.
func (n *Node) Load(pid int, cfg ImageConfig, bin *probes.Binary) (*Image, error) {
	if cfg.Logger == nil {
		cfg.Logger = n.log
	}
	im, err := analyse(pid, cfg, true, bin)
	if err != nil {
		return nil, err
	}
	if err := n.install(im); err != nil {
		im.Close()
		return nil, err
	}
	return im, nil
}

// analyse compiles the probes of process pid's executable: the image
// before it has a node.
func analyse(pid int, cfg ImageConfig, shared bool, bin *probes.Binary) (*Image, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	im := &Image{cfg: cfg, pid: pid, shared: shared, log: cfg.Logger, bin: bin}
	if pid <= 0 {
		return nil, fmt.Errorf("invalid pid %d", pid)
	}
	t0 := time.Now()
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("no such process: %d", pid)
	}
	var err error
	if im.bin == nil {
		if im.bin, err = OpenBinary(pid); err != nil {
			return nil, err
		}
		im.ownBin = true
	}
	rt, err := im.bin.Runtime()
	if err == nil {
		err = im.compile(rt)
	}
	// Compiled or not: the daemon caches the binary, which keeps only what
	// tracing needs from here on.
	im.compact()
	if err != nil {
		im.Close()
		return nil, err
	}
	im.timings.Analyze = time.Since(t0)
	return im, nil
}

// install gives im a range of n's probe ids, sets its recipes there and
// attaches its uprobes.
func (n *Node) install(im *Image) error {
	t1 := time.Now()
	im.node = n
	if err := n.reserve(im, im.size()); err != nil {
		return err
	}
	set := func(id uint32, r bpf.Recipe) error {
		r.PIE = im.bin.PIE
		return n.tracer.SetRecipe(im.base+id, r)
	}
	for _, p := range im.probes {
		if err := set(p.ID, p.Recipe); err != nil {
			return err
		}
	}
	if err := set(im.rtBase, im.rt.Recipe); err != nil {
		return err
	}
	if err := set(im.rtBase+1, im.rt.PanicRecipe); err != nil {
		return err
	}
	t2 := time.Now()
	im.timings.Load += t2.Sub(t1)
	if err := im.attach(fmt.Sprintf("/proc/%d/exe", im.pid)); err != nil {
		return err
	}
	im.timings.Attach = time.Since(t2)
	return nil
}

// size is how many probe ids the image holds.
func (im *Image) size() uint32 { return im.rtBase + 2 }

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
			if p.EndFallback != "" && im.bin.Arch.StepsRET() {
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
	if im.rt.GoCreateFallback != "" && im.bin.Arch.StepsRET() {
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
	// The kernel knows the image's probe id i as base+i.
	cookies := func(n int, id uint32) []uint64 {
		cs := make([]uint64, n)
		for i := range cs {
			cs[i] = uint64(im.base + id)
		}
		return cs
	}
	// An entry site's on the stack check's branch: the program drops the
	// hits that go to morestack.
	onCheck := func(c uint64, on bool) uint64 {
		if on {
			c |= bpf.CookieOnCheck
		}
		return c
	}
	// The cookies of runtime probe id's entry sites (addrs), each marked as
	// OnCheck says.
	rtEntryCookies := func(id uint32, addrs ...uint64) []uint64 {
		cs := make([]uint64, len(addrs))
		for i, a := range addrs {
			cs[i] = onCheck(uint64(im.base+id), slices.Contains(im.rt.OnCheck, a))
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
		entryCookie = append(entryCookie, onCheck(uint64(im.base+p.ID), p.Placement.EntryOnCheck))
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
			retCookie = append(retCookie, uint64(im.base+p.ID))
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
	t := im.node.tracer
	im.attachMode = "uprobe"
	if t.Multi {
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
		{t.EntryProgram(), entryOff, entryCookie},
		{t.ReturnProgram(), retOff, retCookie},
		{t.CallEndProgram(), endOff, endCookie},
		// Go 1.19/1.20: before newproc1 runs, for its returns to pair with.
		{t.GoCreateEntryProgram(), createEntryOff, rtEntryCookies(im.rtBase, im.rt.GoCreateEntry...)},
		{t.GoCreateProgram(), createOff, cookies(len(createOff), im.rtBase)},
		{t.GoCreateCallProgram(), createCallOff, cookies(len(createCallOff), im.rtBase)},
		{t.GoExitProgram(), exitOff, rtEntryCookies(im.rtBase, im.rt.GoExit)},
		{t.PanicProgram(), panicOff, rtEntryCookies(im.rtBase+1, im.rt.Panic)},
	} {
		if len(set.offs) == 0 {
			continue
		}
		if t.Multi {
			l, err := ex.UprobeMulti(nil, set.prog, &link.UprobeMultiOptions{Addresses: set.offs, Cookies: set.cs, PID: uint32(pid)})
			if err != nil {
				return fmt.Errorf("attach uprobes to %s: %w", im.target(), err)
			}
			im.addLink(l)
			im.uprobes += len(set.offs)
			continue
		}
		// Older kernels: one link per offset.
		for i, off := range set.offs {
			l, err := ex.Uprobe("", set.prog, &link.UprobeOptions{Address: off, Cookie: set.cs[i], PID: pid})
			if err != nil {
				return fmt.Errorf("attach uprobe at %#x in %s: %w", off, im.target(), err)
			}
			im.addLink(l)
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

// addLink keeps a link to close with the image.
func (im *Image) addLink(l link.Link) {
	im.linksMu.Lock()
	defer im.linksMu.Unlock()
	im.links = append(im.links, l)
}

// Add starts tracing process cfg.PID, which runs the image's executable
// (the caller checked): from now on its events become spans through
// cfg.Processor.
func (im *Image) Add(cfg SessionConfig) (*Session, error) {
	s, err := im.newSession(cfg)
	if err != nil {
		return nil, err
	}
	if err := im.node.admit(s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newSession makes the pipeline of process cfg.PID: its spans, its
// lifecycle and its decoder, which knows its load bias.
func (im *Image) newSession(cfg SessionConfig) (*Session, error) {
	if cfg.Processor == nil {
		return nil, errors.New("no span processor")
	}
	s := &Session{cfg: cfg, log: im.log, img: im, pidfd: -1}
	if im.bin.PIE {
		var err error
		if s.bias, err = loadBias(cfg.PID, im.bin); err != nil {
			return nil, fmt.Errorf("pid %d: %w", cfg.PID, err)
		}
	}
	target := biased{im.bin, s.bias}
	if err := s.setupPipeline(target.TypeName); err != nil {
		return nil, err
	}
	s.dec = reader.NewDecoder(reader.DecoderConfig{Probes: im.probes, Base: im.base, IDs: im.size(), Target: target, Clock: im.node.clock, ErrorOf: im.errorOf})
	return s, nil
}

// Sessions returns how many processes the image traces.
func (im *Image) Sessions() int {
	im.node.mu.Lock()
	defer im.node.mu.Unlock()
	return im.nsessions
}

// Uprobes returns how many uprobe offsets the image attached.
func (im *Image) Uprobes() int { return im.uprobes }

// retFallbacks counts the hot-path probes on single-stepped RETs for want
// of their emulated site: goroutine creation's, and the built-in probes'
// that have one (the http server's end). None on arm64, whose kernel
// simulates RET.
func (im *Image) retFallbacks() int {
	n := 0
	if !im.bin.Arch.StepsRET() {
		return 0
	}
	if im.rt != nil && im.rt.GoCreateFallback != "" {
		n++
	}
	for _, p := range im.probes {
		if p.EndFallback != "" {
			n++
		}
	}
	return n
}

// Close detaches the image's uprobes, clears its recipes and lets its
// probe ids go; call it once no process is traced with it (or the node's
// Run returned).
func (im *Image) Close() error {
	if im.closed {
		return nil
	}
	im.closed = true
	im.closeLinks()
	if im.node != nil {
		im.node.unreserve(im)
	}
	if im.bin != nil && im.ownBin {
		im.bin.Close()
	}
	return nil
}

func (im *Image) closeLinks() {
	im.linksMu.Lock()
	links := im.links
	im.links = nil
	im.linksMu.Unlock()
	if len(links) == 0 {
		return
	}
	// Releasing a link waits for the kernel's grace period: closing the
	// links together lets those waits overlap.
	t := time.Now()
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Close()
		}()
	}
	wg.Wait()
	im.timings.Detach = time.Since(t)
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

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/discover"
	"github.com/tcagent/tcagent/internal/holds"
	"github.com/tcagent/tcagent/probes"
)

// The daemon's kernel sizes, for the whole host (Options.Base can set
// others): one set of programs and maps serves every executable traced,
// about 21 MiB of locked kernel memory in all (without --propagate; the
// counters grow with the CPUs, 72 KiB a CPU). The ring buffer is half
// attach's: its pages are also mapped, twice, into the daemon's resident
// memory, and a quarter of it waiting wakes the reader.
const (
	DefaultRingBufferSize = 4 << 20
	DefaultMapEntries     = 65536
	DefaultMaxProcesses   = 511
	DefaultMaxProbes      = 4096
)

// Options configure a Daemon.
type Options struct {
	Config *Config
	// Base is the agent configuration every process starts from: its
	// image part for the node (sizes, socket side, logger) and each
	// executable's image,
	// its session part (span processor, sampler, limits) for each
	// process, and its LockDir. Specs and Builtin are set per selector,
	// PID and ServiceName per process.
	Base agent.Config
	// Pods finds processes' pods; nil outside a cluster.
	Pods Pods
	// OnSession is told of each session as it starts (true) and once it
	// ended and flushed (false): the metrics follow it.
	OnSession func(s *agent.Session, started bool)
	// Self is a pid never traced: the agent's own.
	Self int
	// MaxIdleBinaries bounds the analysed executables kept after their last
	// process exited, for a restart to reuse (default 8).
	MaxIdleBinaries int
}

// Stats are the daemon's counts.
type Stats struct {
	// Images counts the executables with uprobes attached (being
	// detached included).
	Traced, Images, Waiting int
	// Decisions counts processes by what became of them: traced, not_go,
	// no_match, attach_failed, no_access (unreadable), self,
	// held_by_other_agent (another tcagent traces it: taken over once it
	// lets go).
	Decisions map[string]uint64
	// DiscoveryLost counts exec and exit events the kernel had no room for.
	DiscoveryLost uint64
	// Unattributed counts events read that belonged to no traced process
	// any more (in flight when it was let go), or to another executable's
	// probes (hit before the process was decided).
	Unattributed uint64
	// DecodeErrors counts events read that could not be decoded.
	DecodeErrors uint64
	// Undecided are the kernel's counts in processes not decided yet
	// (their losses, say), which no session counts.
	Undecided bpf.Counters
}

// Daemon traces every process its selectors match.
type Daemon struct {
	opts  Options
	log   *slog.Logger
	ready atomic.Bool

	mu      sync.Mutex
	ctx     context.Context
	node    *agent.Node
	procs   map[int]*procState
	images  map[imageKey]*imageEntry
	bins    map[binKey]*binEntry
	ids     map[FileID]buildIDResult
	counts  map[string]uint64
	watcher *discover.Watcher
	closers sync.WaitGroup // images being let go
	// closing counts images let go whose links are not closed yet.
	closing int
	// stopNode stops the node's reader and waits for it.
	stopNode func()
}

// binKey names an executable: its processes share an image whatever
// address each was mapped at (each is admitted with its own load bias).
type binKey struct {
	File    FileID
	BuildID string
}

type imageKey struct {
	bin binKey
	sel int
}

type imageEntry struct {
	key imageKey
	im  *agent.Image
	bin *binEntry
}

type binEntry struct {
	bin  *probes.Binary
	refs int
	idle time.Time
}

type buildIDResult struct {
	id  string
	err error
}

type state int

const (
	traced state = iota + 1
	ignored
	// waiting: decided again on each tick (a port not listened on yet, or
	// the process's previous program still leaving its image).
	waiting
)

type procState struct {
	state state
	// decided is when the process was looked at (CLOCK_MONOTONIC, ns): an
	// exec event from before it is of the program already looked at.
	decided uint64
	// A waiting process is looked at again at recheckAt; each look doubles
	// the wait (backoff), up to 8 s.
	recheckAt time.Time
	backoff   time.Duration
	proc      *Process
	bin       binKey
	pod       *Pod
	session   *agent.Session
	image     *imageEntry
	// lock marks the process traced by this daemon (agent.LockProcess);
	// held says another agent holds it (counted once).
	lock *agent.ProcessLock
	held bool
	// full says it waited for room in the node (said once).
	full bool
	// known says the programs were told of the process (ignored), so
	// that they forget it when it exits.
	known bool
}

// New makes a daemon; Run starts it.
func New(opts Options) *Daemon {
	if opts.MaxIdleBinaries <= 0 {
		opts.MaxIdleBinaries = 8
	}
	// The programs' maps take locked kernel memory, charged to the
	// daemon's cgroup (its pod's memory limit).
	if opts.Base.RingBufferSize == 0 {
		opts.Base.RingBufferSize = DefaultRingBufferSize
	}
	if opts.Base.MapEntries == 0 {
		opts.Base.MapEntries = DefaultMapEntries
	}
	if opts.Base.MaxProcesses == 0 {
		opts.Base.MaxProcesses = DefaultMaxProcesses
	}
	if opts.Base.MaxProbes == 0 {
		opts.Base.MaxProbes = DefaultMaxProbes
	}
	log := opts.Base.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{opts: opts, log: log, procs: map[int]*procState{}, images: map[imageKey]*imageEntry{},
		bins: map[binKey]*binEntry{}, ids: map[FileID]buildIDResult{}, counts: map[string]uint64{}}
}

// Ready reports whether the processes running at start have been looked at.
func (d *Daemon) Ready() bool { return d.ready.Load() }

// Run watches processes until ctx is done, then detaches from every one.
func (d *Daemon) Run(ctx context.Context) error {
	node, err := agent.NewNode(d.opts.Base.ImageConfig)
	if err != nil {
		return err
	}
	w, err := discover.Start()
	if err != nil {
		node.Close()
		return fmt.Errorf("watch processes: %w", err)
	}
	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan struct{})
	go func() {
		defer close(nodeDone)
		if err := node.Run(nodeCtx); err != nil {
			d.log.Warn("event reader stopped", "error", err)
		}
	}()
	d.mu.Lock()
	d.ctx, d.watcher, d.node = ctx, w, node
	d.stopNode = func() {
		stopNode()
		<-nodeDone
	}
	d.mu.Unlock()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return d.shutdown(errors.New("process watch ended"))
			}
			switch ev.Kind {
			case discover.Started:
				d.started(ev.PID, !ev.Existing, ev.Time)
			case discover.Exited:
				d.exited(ev.PID)
			case discover.Synced:
				d.ready.Store(true)
				d.log.Info("daemon ready: watching processes", "selectors", len(d.opts.Config.Selectors), "traced", d.Stats().Traced)
			}
		case <-tick.C:
			d.recheck()
		case <-ctx.Done():
			return d.shutdown(nil)
		}
	}
}

func (d *Daemon) shutdown(cause error) error {
	d.watcher.Close()
	d.mu.Lock()
	images := make([]*imageEntry, 0, len(d.images))
	for _, ie := range d.images {
		images = append(images, ie)
	}
	d.images = map[imageKey]*imageEntry{}
	d.mu.Unlock()
	// The reader stops, every image's uprobes are detached and its
	// sessions end.
	d.stopNode()
	for _, ie := range images {
		ie.im.Close()
	}
	// Images let go just before, then the sessions flush before the
	// exporter is shut down.
	d.closers.Wait()
	d.node.Close()
	d.mu.Lock()
	for k, b := range d.bins {
		b.bin.Close()
		delete(d.bins, k)
	}
	for _, st := range d.procs {
		st.lock.Release()
		st.lock = nil
	}
	d.mu.Unlock()
	return cause
}

// Stats reads the daemon's counts.
func (d *Daemon) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Stats{Images: len(d.images) + d.closing, Decisions: map[string]uint64{}}
	for k, v := range d.counts {
		st.Decisions[k] = v
	}
	for _, p := range d.procs {
		switch p.state {
		case traced:
			st.Traced++
		case waiting:
			st.Waiting++
		}
	}
	if d.node != nil {
		st.Unattributed, st.DecodeErrors = d.node.Unattributed(), d.node.DecodeErrors()
		st.Undecided, _ = d.node.Undecided()
	}
	if d.watcher != nil {
		st.DiscoveryLost, _ = d.watcher.Lost()
	}
	return st
}

// MemoryLocked returns the kernel memory the maps and ring buffers of the
// tracing programs and of the process watch lock; an error before Run
// loaded them or after it returned.
func (d *Daemon) MemoryLocked() (uint64, error) {
	d.mu.Lock()
	n, w := d.node, d.watcher
	d.mu.Unlock()
	if n == nil || w == nil {
		return 0, errors.New("the BPF maps are not loaded")
	}
	traced, err := n.MemoryLocked()
	if err != nil {
		return 0, err
	}
	watch, err := w.MemoryLocked()
	return traced + watch, err
}

// started handles a process that execed (exec, at monotonic time ts) or
// was running at start.
func (d *Daemon) started(pid int, exec bool, ts uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st := d.procs[pid]; st != nil {
		if !exec || ts < st.decided {
			// Already seen: its first events asked about it after this
			// exec (the reader can be quicker than the exec event).
			return
		}
		// A new program in a known process: the old one is gone.
		delete(d.procs, pid)
		d.drop(pid, st)
	}
	d.resolve(pid)
}

// exited handles a process that exited.
func (d *Daemon) exited(pid int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st := d.procs[pid]; st != nil {
		delete(d.procs, pid)
		d.drop(pid, st)
	}
}

// unknown is an image's question about a process of its executable the
// programs were told nothing of: decide now, so that its first events are
// kept.
func (d *Daemon) unknown(pid int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.procs[pid]
	if st == nil {
		st = d.resolve(pid)
	}
	switch {
	case st == nil:
		// Gone: its records left are unattributed, and a new process
		// with the pid is asked about again.
		d.node.Forget(pid)
	case st.state != traced:
		// Not traced (the programs follow undecided processes, and may
		// have forgotten a process with its pid that left): left alone
		// from now on.
		d.node.Ignore(pid)
		st.known = true
	}
}

// resolve looks at a process the daemon does not know and traces it when a
// selector matches. It returns nil when the process is gone.
func (d *Daemon) resolve(pid int) *procState {
	decided := monotonic()
	if pid == d.opts.Self {
		d.counts["self"]++
		st := &procState{state: ignored, decided: decided}
		d.procs[pid] = st
		return st
	}
	p, err := readProcess(pid)
	if errors.Is(err, os.ErrPermission) {
		return d.noAccess(pid, decided, err)
	}
	if err != nil {
		return nil // gone, or a kernel thread
	}
	id, err := d.buildID(p)
	if errors.Is(err, os.ErrPermission) {
		delete(d.ids, p.File) // may be readable with other rights later
		return d.noAccess(pid, decided, err)
	}
	if err != nil {
		d.counts["not_go"]++
		st := &procState{state: ignored, proc: p, decided: decided}
		d.procs[pid] = st
		return st
	}
	st := &procState{state: ignored, proc: p, bin: binKey{File: p.File, BuildID: id}, decided: decided}
	d.procs[pid] = st
	if d.opts.Pods != nil {
		for _, sel := range d.opts.Config.Selectors {
			if sel.needsKube() {
				if st.pod, err = d.opts.Pods.Pod(d.ctx, p); err != nil {
					d.log.Warn("kubernetes metadata", "pid", pid, "error", err)
				}
				break
			}
		}
	}
	d.decide(pid, st)
	return st
}

// noAccess records a process the daemon may not look at: counted, and
// said once, since every such process would say the same.
func (d *Daemon) noAccess(pid int, decided uint64, err error) *procState {
	d.counts["no_access"]++
	if d.counts["no_access"] == 1 {
		d.log.Warn("cannot read a process's executable: the daemon needs CAP_SYS_PTRACE, and CAP_DAC_READ_SEARCH for executables it may not read (processes so skipped are counted in tcagent_daemon_processes_total{decision=\"no_access\"})",
			"pid", pid, "error", err)
	}
	st := &procState{state: ignored, decided: decided}
	d.procs[pid] = st
	return st
}

// monotonic reads CLOCK_MONOTONIC, the clock of the kernel's events.
func monotonic() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// decide picks the selector of a process (the first that matches) and
// traces it, or leaves it waiting for its port, or ignored.
func (d *Daemon) decide(pid int, st *procState) {
	wait := false
	for i := range d.opts.Config.Selectors {
		others, port := d.opts.Config.Selectors[i].match(st.proc, st.pod)
		if others && port {
			d.trace(pid, st, i)
			return
		}
		wait = wait || others
	}
	if wait {
		st.wait()
	} else {
		st.state = ignored
		d.counts["no_match"]++
	}
	d.ignore(pid, st)
}

// ignore tells the programs to leave alone a process not traced, when an
// image's uprobes sit in its executable (they fire in it).
func (d *Daemon) ignore(pid int, st *procState) {
	if st.known {
		return
	}
	for k := range d.images {
		if k.bin == st.bin {
			d.node.Ignore(pid)
			st.known = true
			return
		}
	}
}

func (d *Daemon) trace(pid int, st *procState, selIdx int) {
	sel := &d.opts.Config.Selectors[selIdx]
	if st.lock == nil {
		lock, err := agent.LockProcess(d.opts.Base.LockDir, pid)
		var held *holds.HeldError
		if errors.As(err, &held) {
			// Another agent traces it: left to that one, and looked at
			// again, to be traced here once it lets go.
			if !st.held {
				st.held = true
				d.counts["held_by_other_agent"]++
				d.log.Warn("process traced by another agent: left to it until it detaches", "pid", pid, "exe", st.proc.Exe, "holder", held.Error())
			}
			st.wait()
			d.ignore(pid, st)
			return
		}
		if err != nil {
			d.failed(pid, st, sel, err)
			return
		}
		st.lock = lock
	}
	key := imageKey{bin: st.bin, sel: selIdx}
	ie := d.images[key]
	if ie == nil {
		var err error
		if ie, err = d.load(pid, st.proc.Exe, key, sel); err != nil {
			d.failed(pid, st, sel, err)
			return
		}
	}
	cfg := d.opts.Base.SessionConfig
	cfg.PID = pid
	cfg.ServiceName = serviceName(sel, st)
	cfg.Attributes = append(append([]attribute.KeyValue(nil), cfg.Attributes...), podAttributes(st.pod)...)
	s, err := ie.im.Add(cfg)
	if err != nil {
		// Its previous program (an exec) has not left the node yet, or the
		// node traces as many processes as it may: try again later, its
		// hits doing nothing meanwhile.
		st.wait()
		d.ignore(pid, st)
		if errors.Is(err, agent.ErrNodeFull) && !st.full {
			st.full = true
			d.log.Warn("process waits: as many processes traced as the daemon may", "pid", pid, "exe", st.proc.Exe, "error", err)
		} else {
			d.log.Debug("attach deferred", "pid", pid, "error", err)
		}
		return
	}
	st.state, st.session, st.image, st.held, st.known = traced, s, ie, false, false
	d.counts["traced"]++
	if d.opts.OnSession != nil {
		d.opts.OnSession(s, true)
	}
	d.log.Info("attached", "pid", pid, "exe", st.proc.Exe, "selector", sel.Name, "service", cfg.ServiceName,
		"processes_sharing_probes", ie.im.Sessions(), "uprobes", ie.im.Uprobes())
}

// failed leaves alone a process that could not be traced.
func (d *Daemon) failed(pid int, st *procState, sel *Selector, err error) {
	d.counts["attach_failed"]++
	st.state = ignored
	st.lock.Release()
	st.lock = nil
	d.log.Warn("attach failed", "pid", pid, "exe", st.proc.Exe, "selector", sel.Name, "error", err)
	d.ignore(pid, st)
}

// load analyses (or takes from the cache) the executable of pid, and
// attaches a shared image for the selector.
func (d *Daemon) load(pid int, exe string, key imageKey, sel *Selector) (*imageEntry, error) {
	be := d.bins[key.bin]
	if be == nil {
		bin, err := agent.OpenBinary(pid)
		if err != nil {
			return nil, err
		}
		be = &binEntry{bin: bin}
		d.bins[key.bin] = be
	}
	cfg := d.opts.Base.ImageConfig
	cfg.Specs, cfg.Builtin = sel.Specs(), sel.BuiltinSets()
	cfg.OnUnknownPID = d.unknown
	im, err := d.node.Load(pid, cfg, be.bin)
	if err != nil {
		d.trimBins()
		return nil, err
	}
	be.refs++
	ie := &imageEntry{key: key, im: im, bin: be}
	d.images[key] = ie
	d.log.Info("probes attached", "exe", exe, "selector", sel.Name, "uprobes", im.Uprobes(), "analyze", im.Timings().Analyze, "attach", im.Timings().Attach)
	return ie, nil
}

// drop forgets a process that exited or execed: its session ends (once
// its last events are read) and the programs forget it.
func (d *Daemon) drop(pid int, st *procState) {
	// Gone, or another program: the mark is of the process that was.
	st.lock.Release()
	st.lock = nil
	if st.state != traced {
		if st.known {
			d.node.Forget(pid)
		}
		return
	}
	ie := st.image
	d.node.Remove(st.session, func(s *agent.Session) { d.ended(ie, s) })
}

// ended is called once a session flushed: the image goes when it was its
// last, so that no uprobe stays on an executable nothing traced runs.
func (d *Daemon) ended(ie *imageEntry, s *agent.Session) {
	if s != nil && d.opts.OnSession != nil {
		d.opts.OnSession(s, false)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ie.im.Sessions() > 0 || d.images[ie.key] != ie {
		return
	}
	delete(d.images, ie.key)
	d.closing++
	d.closers.Add(1)
	go func() {
		defer d.closers.Done()
		ie.im.Close()
		d.mu.Lock()
		defer d.mu.Unlock()
		d.closing--
		ie.bin.refs--
		ie.bin.idle = time.Now()
		d.trimBins()
	}()
}

// trimBins closes the analysed executables no image uses beyond the most
// recent MaxIdleBinaries.
func (d *Daemon) trimBins() {
	var idle []binKey
	for k, b := range d.bins {
		if b.refs == 0 {
			idle = append(idle, k)
		}
	}
	if len(idle) <= d.opts.MaxIdleBinaries {
		return
	}
	sort.Slice(idle, func(i, j int) bool { return d.bins[idle[i]].idle.Before(d.bins[idle[j]].idle) })
	for _, k := range idle[:len(idle)-d.opts.MaxIdleBinaries] {
		d.bins[k].bin.Close()
		delete(d.bins, k)
	}
}

// wait leaves the process to be decided again later.
func (st *procState) wait() {
	if st.state != waiting {
		st.state, st.backoff = waiting, 250*time.Millisecond
	} else if st.backoff < 8*time.Second {
		st.backoff *= 2
	}
	st.recheckAt = time.Now().Add(st.backoff)
}

// recheck decides again for the waiting processes whose time came.
func (d *Daemon) recheck() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for pid, st := range d.procs {
		if st.state == waiting && now.After(st.recheckAt) {
			d.decide(pid, st)
		}
	}
}

// buildID returns the Go build id of p's executable, cached by file: most
// execs on a host are of a few executables, most not Go.
func (d *Daemon) buildID(p *Process) (string, error) {
	if r, ok := d.ids[p.File]; ok {
		return r.id, r.err
	}
	id, err := goBuildID(fmt.Sprintf("/proc/%d/exe", p.PID))
	if len(d.ids) >= 4096 {
		clear(d.ids)
	}
	d.ids[p.File] = buildIDResult{id, err}
	return id, err
}

// serviceName names a process's service: the selector's name for it, else
// the Kubernetes container's name, else the executable's.
func serviceName(sel *Selector, st *procState) string {
	if sel.ServiceName != "" {
		return sel.ServiceName
	}
	if st.pod != nil && st.pod.Container != "" {
		return st.pod.Container
	}
	return filepath.Base(st.proc.Exe)
}

// podAttributes are the resource attributes of a process's pod.
func podAttributes(pod *Pod) []attribute.KeyValue {
	if pod == nil {
		return nil
	}
	attrs := []attribute.KeyValue{
		attribute.String("k8s.namespace.name", pod.Namespace),
		attribute.String("k8s.pod.name", pod.Name),
		attribute.String("k8s.pod.uid", pod.UID),
	}
	if pod.Container != "" {
		attrs = append(attrs, attribute.String("k8s.container.name", pod.Container))
	}
	return attrs
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/reader"
)

// Node is the BPF programs and maps an agent loads once, with their one
// ring buffer and the one reader that routes its records by pid to the
// Sessions: every executable traced (an Image) holds a range of its probe
// ids, its recipes and its links, nothing else, and every process traced
// is admitted for its executable's range with its own load bias and
// counter slot. The daemon has one for the whole host; Attach one for its
// one process.
type Node struct {
	cfg    ImageConfig // its sizes, socket side, sampling and poll interval
	log    *slog.Logger
	tracer *bpf.Tracer
	rd     *reader.Reader
	clock  reader.Clock

	// mu guards what follows.
	mu sync.Mutex
	// ids are the probe ids of the images; images are by their first.
	ids    idRanges
	images map[uint32]*Image
	// sessions maps pids to their Session (the reader routes each pid's
	// records to its session's lifecycle).
	sessions map[uint32]*Session
	slots    []uint32 // free counter slots
	nextSlot uint32
	// closing sessions flush in the background; Close waits for them.
	closing  sync.WaitGroup
	released bool
}

// ErrNodeFull says a node traces as many processes as it may.
var ErrNodeFull = errors.New("already tracing the most processes configured")

// NewNode loads the programs and maps with cfg's sizes (RingBufferSize,
// MapEntries, MaxProcesses, MaxProbes), socket side and root sampling;
// the other fields of cfg are each image's. Run reads its events.
func NewNode(cfg ImageConfig) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lopts := bpf.Options{RingBufferSize: cfg.RingBufferSize, Propagator: cfg.Propagator, MapEntries: cfg.MapEntries,
		Probes: cfg.MaxProbes, Slots: cfg.MaxProcesses, SingleUprobes: cfg.SingleUprobes}
	if cfg.RootSampleRatio != nil {
		bound := bpf.SampleBoundOf(*cfg.RootSampleRatio)
		lopts.SampleBound = &bound
	}
	tracer, err := bpf.Load(lopts)
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("insufficient privilege to load eBPF programs: run as root (or with CAP_BPF and CAP_PERFMON): %w", err)
		}
		return nil, err
	}
	rb, err := ringbuf.NewReader(tracer.Events())
	if err != nil {
		tracer.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, tracer: tracer, clock: reader.NewClock(), ids: idRanges{n: tracer.Probes()},
		images: map[uint32]*Image{}, sessions: map[uint32]*Session{}, nextSlot: 1}
	n.rd = reader.New(rb, reader.Options{PollInterval: cfg.PollInterval, Tick: n.tick, OnUnknownPID: n.unknown})
	return n, nil
}

// unknown passes the first record of a process nobody decided on to the
// image whose probe fired, whose OnUnknownPID decides.
func (n *Node) unknown(pid, probe uint32) {
	n.mu.Lock()
	var im *Image
	if lo, ok := n.ids.find(probe); ok {
		im = n.images[lo]
	}
	n.mu.Unlock()
	if im != nil && im.cfg.OnUnknownPID != nil {
		im.cfg.OnUnknownPID(int(pid))
	}
}

// reserve gives im a range of size probe ids.
func (n *Node) reserve(im *Image, size uint32) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	lo, ok := n.ids.alloc(size)
	if !ok {
		return fmt.Errorf("%s needs %d probe ids, and fewer of the %d are free (the daemon's --max-probes)", im.bin.Path, size, n.ids.n)
	}
	im.base = lo
	n.images[lo] = im
	return nil
}

// unreserve clears the recipes of im, whose links are closed, and lets
// its probe ids go.
func (n *Node) unreserve(im *Image) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.images[im.base] != im {
		return
	}
	for id := im.base; id < im.base+im.size(); id++ {
		if err := n.tracer.ClearRecipe(id); err != nil {
			n.log.Warn("clearing a recipe", "error", err)
		}
	}
	delete(n.images, im.base)
	n.ids.free(im.base)
}

// admit makes the programs serve session s's process for its image's
// probes, with a counter slot of its own, and routes its records to it.
func (n *Node) admit(s *Session) error {
	pid := uint32(s.cfg.PID)
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, dup := n.sessions[pid]; dup {
		return fmt.Errorf("pid %d: already traced", pid)
	}
	switch {
	case len(n.slots) > 0:
		s.slot, n.slots = n.slots[len(n.slots)-1], n.slots[:len(n.slots)-1]
	case n.nextSlot < n.tracer.Slots():
		s.slot = n.nextSlot
		n.nextSlot++
	default:
		return fmt.Errorf("pid %d: %w: %d (the daemon's --max-processes)", pid, ErrNodeFull, n.tracer.Slots()-1)
	}
	im := s.img
	a := bpf.Admission{Slot: s.slot, Lo: im.base, Hi: im.base + im.size(), Bias: s.bias}
	if err := n.tracer.AdmitPID(pid, a); err != nil {
		n.slots = append(n.slots, s.slot)
		return err
	}
	n.route(s)
	return nil
}

// route sends the records of s's process to s (n.mu held).
func (n *Node) route(s *Session) {
	pid := uint32(s.cfg.PID)
	n.sessions[pid] = s
	s.img.nsessions++
	n.rd.Route(pid, s.dec, s.tracker)
}

// Ignore makes the programs do nothing in process pid, which is not to be
// traced.
func (n *Node) Ignore(pid int) error { return n.tracer.IgnorePID(uint32(pid)) }

// Forget drops what the node knows of a process that exited and was never
// traced (once the reader is past its last events). Run must be running.
// It does not block.
func (n *Node) Forget(pid int) {
	n.rd.Later(func() { n.finish(removal{pid: uint32(pid)}, lifecycle.EndExit) })
}

// Remove ends session s, whose process exited: once the events it left in
// the ring buffer are read its open spans end, then its spans are flushed
// and done is called (from another goroutine) with the session. Run must
// be running. It does not block.
func (n *Node) Remove(s *Session, done func(*Session)) {
	r := removal{pid: uint32(s.cfg.PID), s: s, done: done}
	n.rd.Later(func() { n.finish(r, lifecycle.EndExit) })
}

type removal struct {
	pid uint32
	// s is the session to end; nil to forget a process never traced. A
	// session that is not s (a new process with the pid) stays.
	s    *Session
	done func(*Session)
}

// finish ends a removed process's session, from the reader's goroutine
// once its last records are read: its open spans end for reason, its
// counters are kept, the kernel and the reader forget it, and its spans
// are flushed in the background.
func (n *Node) finish(r removal, reason string) {
	n.mu.Lock()
	s := n.sessions[r.pid]
	if s != r.s {
		// A new process with the pid, admitted meanwhile: it stays.
		n.mu.Unlock()
		if r.done != nil {
			r.done(r.s)
		}
		return
	}
	n.rd.Forget(r.pid)
	if s != nil {
		delete(n.sessions, r.pid)
		s.img.nsessions--
	}
	n.mu.Unlock()
	if err := n.tracer.ForgetPID(r.pid); err != nil {
		n.log.Warn("forgetting a process", "pid", r.pid, "error", err)
	}
	if s == nil {
		if r.done != nil {
			r.done(nil)
		}
		return
	}
	s.tracker.EndAll(reason, time.Now())
	k, err := n.tracer.Counters(s.slot)
	s.final, s.finalErr = &k, err
	s.publish()
	s.logDetached(reason)
	n.mu.Lock()
	n.slots = append(n.slots, s.slot)
	n.mu.Unlock()
	n.closing.Add(1)
	go func() {
		defer n.closing.Done()
		if err := s.Close(); err != nil {
			n.log.Warn("flushing spans", "pid", r.pid, "error", err)
		}
		if r.done != nil {
			r.done(s)
		}
	}()
}

// current returns the sessions traced now.
func (n *Node) current() []*Session {
	n.mu.Lock()
	defer n.mu.Unlock()
	ss := make([]*Session, 0, len(n.sessions))
	for _, s := range n.sessions {
		ss = append(ss, s)
	}
	return ss
}

// tick, from the reader about once a second, ends the sessions' calls that
// waited too long and publishes their counts.
func (n *Node) tick(now time.Time) {
	for _, s := range n.current() {
		s.tracker.Expire(now)
		s.publish()
	}
}

// Run reads the events until ctx is done, then detaches every image's
// uprobes and ends every session's open spans.
func (n *Node) Run(ctx context.Context) error {
	err := n.rd.Run(ctx, nil)
	n.detach()
	n.rd.Drain() // and ends the processes removed meanwhile
	for _, s := range n.current() {
		n.finish(removal{pid: uint32(s.cfg.PID), s: s}, lifecycle.EndDetach)
	}
	return err
}

// detach closes every image's links: no new events.
func (n *Node) detach() {
	n.mu.Lock()
	images := make([]*Image, 0, len(n.images))
	for _, im := range n.images {
		images = append(images, im)
	}
	n.mu.Unlock()
	for _, im := range images {
		im.closeLinks()
	}
}

// Close waits for the sessions to flush and releases the programs and
// maps; call it after Run returned and the images were closed.
func (n *Node) Close() error {
	n.closing.Wait()
	n.release()
	return nil
}

func (n *Node) release() {
	n.mu.Lock()
	if n.released {
		n.mu.Unlock()
		return
	}
	n.released = true
	n.mu.Unlock()
	n.detach()
	n.rd.Close()
	for _, s := range n.current() {
		if s.final == nil {
			k, err := n.tracer.Counters(s.slot)
			s.final, s.finalErr = &k, err
		}
	}
	n.tracer.Close()
}

// Programs returns the loaded BPF programs.
func (n *Node) Programs() []*ebpf.Program {
	t := n.tracer
	return []*ebpf.Program{t.EntryProgram(), t.ReturnProgram(), t.CallEndProgram(), t.GoCreateEntryProgram(), t.GoCreateProgram(), t.GoCreateCallProgram(), t.GoExitProgram(), t.PanicProgram()}
}

// Undecided reads the kernel's counters of the processes not admitted
// (slot 0): the hits in a process of a traced executable before the
// daemon decided on it, which no session counts.
func (n *Node) Undecided() (bpf.Counters, error) { return n.tracer.Counters(0) }

// Unattributed counts events read that belonged to no traced process, or
// to another image's probes than their process's (hit before it was
// decided).
func (n *Node) Unattributed() uint64 { return n.rd.Unattributed() }

// DecodeErrors counts records that could not be decoded or that no probe
// explains.
func (n *Node) DecodeErrors() uint64 { return n.rd.DecodeErrors() }

// MemoryLocked returns the kernel memory the node's maps and ring buffer
// lock, and its socket side's with --propagate.
func (n *Node) MemoryLocked() (uint64, error) {
	maps := n.tracer.Maps()
	if n.cfg.Propagator != nil {
		maps = append(maps, n.cfg.Propagator.Maps()...)
	}
	return bpf.Memlock(maps...)
}

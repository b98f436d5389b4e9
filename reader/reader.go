// Package reader is the stage after the kernel: it reads the agent's ring
// buffer (one for every executable traced), decodes each record (record.go) and interprets it with its
// probe's recipe (decoder.go, values.go) into an Event, and routes the
// event by pid to the sink of its process: the process's lifecycle.
//
// One goroutine runs a Reader; everything it calls (decoders, sinks, the
// tick, the functions given to Later) runs on it, so none of them needs a
// lock against the others.
package reader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// Source is where records come from: the node's ring buffer
// (*ringbuf.Reader).
type Source interface {
	SetDeadline(t time.Time)
	ReadInto(rec *ringbuf.Record) error
	Close() error
}

// Sink receives one process's events, in the order the kernel wrote them.
// It must not keep ev (the decoder reuses it).
type Sink interface {
	Handle(ev *Event)
}

// Options tune a Reader.
type Options struct {
	// PollInterval bounds how long a record waits in the ring buffer
	// before it is read (default 50ms).
	PollInterval time.Duration
	// OnUnknownPID is called, from Run's goroutine, with the first record
	// of a process that has no route and the record's probe id (which
	// tells the executable): the caller may Route it now, and the record
	// goes there. It is asked once per pid (until Forget).
	OnUnknownPID func(pid, probe uint32)
	// Tick is called from Run's goroutine about once a second, with the
	// time (to expire what waited too long).
	Tick func(now time.Time)
}

// Reader reads one ring buffer and routes its records to the processes'
// sinks.
type Reader struct {
	src  Source
	opts Options
	// routes maps pids to their decoder and sink; copied on write, so
	// that each record finds its route without a lock.
	routes atomic.Pointer[map[uint32]route]
	mu     sync.Mutex // serialises writers of routes, later and asked
	// later are functions to run once the records buffered when they were
	// queued are read (nlater tells Run there are some).
	later  []func()
	nlater atomic.Int32
	// asked holds the pids OnUnknownPID was asked about.
	asked map[uint32]bool
	rec   Record

	decodeErrors atomic.Uint64
	// unattributed counts records of no routed process (in flight from a
	// process just ignored or gone), or of another executable's probes
	// than their process's.
	unattributed atomic.Uint64
}

type route struct {
	dec  *Decoder
	sink Sink
}

// New returns a reader of src.
func New(src Source, opts Options) *Reader {
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	r := &Reader{src: src, opts: opts, asked: map[uint32]bool{}}
	r.routes.Store(&map[uint32]route{})
	return r
}

// Route sends the records of process pid, decoded by dec, to sink. A pid
// has one route at a time.
func (r *Reader) Route(pid uint32, dec *Decoder, sink Sink) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.routes.Load()
	if _, dup := cur[pid]; dup {
		return fmt.Errorf("pid %d: already routed", pid)
	}
	next := make(map[uint32]route, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[pid] = route{dec, sink}
	r.routes.Store(&next)
	return nil
}

// Forget removes pid's route, if any, and forgets that OnUnknownPID was
// asked about it: its later records are unattributed, until a new process
// with the pid shows up.
func (r *Reader) Forget(pid uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.asked, pid)
	cur := *r.routes.Load()
	if _, ok := cur[pid]; !ok {
		return
	}
	next := make(map[uint32]route, len(cur))
	for k, v := range cur {
		if k != pid {
			next[k] = v
		}
	}
	r.routes.Store(&next)
}

// Later runs fn on Run's goroutine once the records the ring buffer holds
// now are read: a process that exited is ended after its last events. It
// does not block; Drain runs what is queued too.
func (r *Reader) Later(fn func()) {
	r.mu.Lock()
	r.later = append(r.later, fn)
	r.nlater.Store(int32(len(r.later)))
	r.mu.Unlock()
}

// readBatch bounds the records Run reads between two looks at the clock,
// ctx and stop: a record costs a few microseconds, so a batch is well under
// the poll interval, and the clock (slow to read in many VMs) is read once
// per batch rather than twice per record.
const readBatch = 256

// Run reads and routes records until ctx is done or stop (which may be
// nil) is closed. It returns nil then, or the error that stopped reading.
func (r *Reader) Run(ctx context.Context, stop <-chan struct{}) error {
	var rec ringbuf.Record
	nextTick := time.Now().Add(time.Second)
	for {
		now := time.Now()
		if now.After(nextTick) {
			if r.opts.Tick != nil {
				r.opts.Tick(now)
			}
			nextTick = now.Add(time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		default:
		}
		if r.nlater.Load() > 0 {
			r.Drain()
			continue
		}
		// One deadline for the batch: while the ring holds records,
		// reading them never waits, and once it is empty the read waits
		// until the deadline at most.
		r.src.SetDeadline(now.Add(r.opts.PollInterval))
		for range readBatch {
			if err := r.src.ReadInto(&rec); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				return fmt.Errorf("read ring buffer: %w", err)
			}
			r.Dispatch(rec.RawSample)
			if r.nlater.Load() > 0 {
				break
			}
		}
	}
}

// Drain reads what the ring buffer holds now, then runs the functions
// queued by Later until then (the records buffered when each was queued
// are read by then). Call it from Run's goroutine or once Run returned.
func (r *Reader) Drain() {
	var rec ringbuf.Record
	r.src.SetDeadline(time.Now())
	for r.src.ReadInto(&rec) == nil {
		r.Dispatch(rec.RawSample)
	}
	r.mu.Lock()
	fns := r.later
	r.later = nil
	r.nlater.Store(0)
	r.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Dispatch decodes one raw record and hands it to its process's sink:
// what Run does with each record it reads.
func (r *Reader) Dispatch(raw []byte) {
	if err := r.rec.Decode(raw); err != nil {
		r.decodeErrors.Add(1)
		return
	}
	rt, ok := (*r.routes.Load())[r.rec.Pid]
	if !ok && r.opts.OnUnknownPID != nil && r.ask(r.rec.Pid) {
		r.opts.OnUnknownPID(r.rec.Pid, r.rec.Probe)
		rt, ok = (*r.routes.Load())[r.rec.Pid]
	}
	// A probe of another executable: hit in the process before it was
	// decided (the kernel follows undecided processes everywhere).
	if !ok || !rt.dec.Owns(r.rec.Probe) {
		r.unattributed.Add(1)
		return
	}
	ev, ok := rt.dec.Decode(&r.rec)
	if !ok {
		r.decodeErrors.Add(1)
		return
	}
	rt.sink.Handle(ev)
}

// ask reports whether OnUnknownPID is to be asked about pid: the first
// time only.
func (r *Reader) ask(pid uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.asked[pid] {
		return false
	}
	r.asked[pid] = true
	return true
}

// Close closes the source.
func (r *Reader) Close() error { return r.src.Close() }

// DecodeErrors counts records that could not be decoded or that no probe
// explains.
func (r *Reader) DecodeErrors() uint64 { return r.decodeErrors.Load() }

// Unattributed counts records read that belonged to no routed process,
// or to another executable's probes than their process's.
func (r *Reader) Unattributed() uint64 { return r.unattributed.Load() }

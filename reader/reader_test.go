package reader

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/tcagent/tcagent/bpf"
)

// fakeSource is a ring buffer fed by the test.
type fakeSource struct {
	mu       sync.Mutex
	recs     [][]byte
	deadline time.Time
	err      error // returned once the records are read, instead of a timeout
}

func (f *fakeSource) push(recs ...[]byte) {
	f.mu.Lock()
	f.recs = append(f.recs, recs...)
	f.mu.Unlock()
}

func (f *fakeSource) SetDeadline(t time.Time) {
	f.mu.Lock()
	f.deadline = t
	f.mu.Unlock()
}

func (f *fakeSource) ReadInto(rec *ringbuf.Record) error {
	f.mu.Lock()
	if len(f.recs) > 0 {
		rec.RawSample, f.recs = f.recs[0], f.recs[1:]
		f.mu.Unlock()
		return nil
	}
	d, err := f.deadline, f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	time.Sleep(time.Until(d))
	return os.ErrDeadlineExceeded
}

func (f *fakeSource) Close() error { return nil }

// raw encodes a record of process pid as tracer.c lays it out.
func raw(kind Kind, pid uint32, goid uint64, probe uint32) []byte {
	b := make([]byte, bpf.EventSize)
	le := binary.LittleEndian
	le.PutUint64(b[8:], goid)
	le.PutUint32(b[24:], probe)
	le.PutUint32(b[28:], pid)
	le.PutUint16(b[40:], uint16(kind))
	b[42] = 1
	le.PutUint64(b[bpf.EventHeaderSize:], goid+100) // a GoCreate's child
	return b
}

// sink keeps what it is handed (a copy: the decoder reuses the event).
type sink struct {
	mu     sync.Mutex
	events []Event
}

func (s *sink) Handle(ev *Event) {
	s.mu.Lock()
	s.events = append(s.events, *ev)
	s.mu.Unlock()
}

func (s *sink) goroutines() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gs []uint64
	for _, e := range s.events {
		gs = append(gs, e.Goroutine)
	}
	return gs
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// newDecoder decodes the test probes, ids 0 to 2, and the runtime
// probes' records, ids 3 and 4.
func newDecoder() *Decoder { return NewDecoder(DecoderConfig{Probes: testProbes(), IDs: 5}) }

// TestRouting: each record goes, decoded, to its process's sink; a record
// of no routed process or of another executable's probe (unattributed),
// or that does not decode, is counted and goes nowhere.
func TestRouting(t *testing.T) {
	r := New(&fakeSource{}, Options{})
	var a, b sink
	r.Route(10, newDecoder(), &a)
	r.Route(20, newDecoder(), &b)
	r.Dispatch(raw(GoCreate, 10, 1, 0))
	r.Dispatch(raw(GoCreate, 20, 2, 0))
	r.Dispatch(raw(GoExit, 10, 3, 3))                   // a runtime probe's
	r.Dispatch(raw(GoExit, 30, 4, 0))                   // no route
	r.Dispatch(raw(Start, 20, 5, 7))                    // another executable's probe
	r.Dispatch(raw(Kind(9), 20, 7, 0))                  // no such kind
	r.Dispatch(raw(GoExit, 20, 6, 0)[:bpf.EventSize-1]) // short
	if got := a.goroutines(); !equal(got, []uint64{1, 3}) {
		t.Errorf("pid 10's sink got goroutines %v, want [1 3]", got)
	}
	if got := b.goroutines(); !equal(got, []uint64{2}) {
		t.Errorf("pid 20's sink got goroutines %v, want [2]", got)
	}
	if len(a.events) > 0 && (a.events[0].Kind != GoCreate || a.events[0].Child != 101) {
		t.Errorf("pid 10's first event %+v, want the creation of goroutine 101", a.events[0])
	}
	if n := r.Unattributed(); n != 2 {
		t.Errorf("%d unattributed, want 2", n)
	}
	if n := r.DecodeErrors(); n != 2 {
		t.Errorf("%d decode errors, want 2", n)
	}
	r.Forget(10)
	r.Dispatch(raw(GoExit, 10, 8, 0))
	if got := a.goroutines(); !equal(got, []uint64{1, 3}) || r.Unattributed() != 3 {
		t.Errorf("after Forget, pid 10's sink got %v and %d unattributed, want [1 3] and 3", got, r.Unattributed())
	}
}

// TestUnknownPID: the first record of a process with no route asks the
// wiring, once per pid; a route made then receives that first record.
func TestUnknownPID(t *testing.T) {
	var admitted sink
	asked := map[uint32]int{}
	var r *Reader
	r = New(&fakeSource{}, Options{OnUnknownPID: func(pid, _ uint32) {
		asked[pid]++
		if pid == 7 {
			r.Route(pid, newDecoder(), &admitted)
		}
	}})
	r.Dispatch(raw(GoCreate, 7, 1, 0))
	r.Dispatch(raw(GoExit, 7, 2, 0))
	r.Dispatch(raw(GoExit, 8, 3, 0))
	r.Dispatch(raw(GoExit, 8, 4, 0))
	if got := admitted.goroutines(); !equal(got, []uint64{1, 2}) {
		t.Errorf("the process admitted on its first record got %v, want [1 2]", got)
	}
	if asked[7] != 1 || asked[8] != 1 {
		t.Errorf("asked %v, want each pid once", asked)
	}
	if n := r.Unattributed(); n != 2 {
		t.Errorf("%d unattributed, want pid 8's 2", n)
	}
	r.Forget(8) // the process left: a new one with the pid is asked about
	r.Dispatch(raw(GoExit, 8, 5, 0))
	if asked[8] != 2 {
		t.Errorf("pid 8 asked %d times after Forget, want 2", asked[8])
	}
}

// TestDrainThenLater: what Later queues runs after the records buffered
// when it was queued were read, on the reader's goroutine.
func TestDrainThenLater(t *testing.T) {
	src := &fakeSource{}
	r := New(src, Options{})
	var a sink
	r.Route(1, newDecoder(), &a)
	src.push(raw(GoExit, 1, 1, 0), raw(GoExit, 1, 2, 0))
	var seen []uint64
	r.Later(func() { seen = a.goroutines() })
	r.Drain()
	if !equal(seen, []uint64{1, 2}) {
		t.Fatalf("Later ran having seen %v, want both buffered records [1 2]", seen)
	}
	seen = nil
	r.Drain()
	if seen != nil {
		t.Fatal("a function given to Later ran twice")
	}
}

// TestRun: Run reads what arrives, runs what Later queues once the records
// before it are read, ticks, and stops when told, or on a read error.
func TestRun(t *testing.T) {
	src := &fakeSource{}
	ticked := make(chan struct{})
	var once sync.Once
	r := New(src, Options{PollInterval: time.Millisecond, Tick: func(time.Time) { once.Do(func() { close(ticked) }) }})
	var a sink
	r.Route(1, newDecoder(), &a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, nil) }()
	src.push(raw(GoExit, 1, 1, 0), raw(GoExit, 1, 2, 0), raw(GoExit, 1, 3, 0))
	later := make(chan []uint64, 1)
	r.Later(func() { later <- a.goroutines() })
	select {
	case got := <-later:
		if !equal(got, []uint64{1, 2, 3}) {
			t.Errorf("Later ran having seen %v, want [1 2 3]", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("what Later queued never ran")
	}
	select {
	case <-ticked:
	case <-time.After(30 * time.Second):
		t.Fatal("Run never ticked")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run stopped by its context: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop when its context was done")
	}

	stop := make(chan struct{})
	go func() { done <- r.Run(context.Background(), stop) }()
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Run stopped by its stop channel: %v", err)
	}

	broken := errors.New("ring buffer closed")
	src.mu.Lock()
	src.err = broken
	src.mu.Unlock()
	if err := r.Run(context.Background(), nil); !errors.Is(err, broken) {
		t.Fatalf("Run after a read error returned %v, want it wrapped", err)
	}
}

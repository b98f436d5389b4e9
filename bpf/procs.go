package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ProcKind is what a ProcEvent reports.
type ProcKind uint32

// Process events (procs.c).
const (
	ProcExec ProcKind = 1 // the process execed a new program
	ProcExit ProcKind = 2 // the process exited
)

// ProcEvent is a process that execed or exited.
type ProcEvent struct {
	PID  int
	Kind ProcKind
	// Time is when it happened: CLOCK_MONOTONIC, in nanoseconds.
	Time uint64
}

// ProcWatch follows every process of the host as it execs and exits
// (procs.c), for the daemon to find the processes to trace as they start.
type ProcWatch struct {
	objs  procsObjects
	links []link.Link
	rd    *ringbuf.Reader
}

// WatchProcs loads and attaches the process-discovery programs.
func WatchProcs() (*ProcWatch, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, privileged(fmt.Errorf("remove memlock limit: %w", err))
	}
	w := &ProcWatch{}
	if err := loadProcsObjects(&w.objs, nil); err != nil {
		return nil, privileged(fmt.Errorf("load the process programs: %w", err))
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{{"sched_process_exec", w.objs.TcProcExec}, {"sched_process_exit", w.objs.TcProcExit}} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("attach to %s: %w", tp.name, err)
		}
		w.links = append(w.links, l)
	}
	var err error
	if w.rd, err = ringbuf.NewReader(w.objs.ProcEvents); err != nil {
		w.Close()
		return nil, fmt.Errorf("open the process events: %w", err)
	}
	return w, nil
}

// privileged says which capabilities a refused load lacked.
func privileged(err error) error {
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) {
		return fmt.Errorf("insufficient privilege to load eBPF programs: run as root (or with CAP_BPF and CAP_PERFMON): %w", err)
	}
	return err
}

// Read waits for the next event; once Close was called it fails with an
// error that errors.Is os.ErrClosed.
func (w *ProcWatch) Read() (ProcEvent, error) {
	rec, err := w.rd.Read()
	if err != nil {
		return ProcEvent{}, err
	}
	if len(rec.RawSample) < 16 {
		return ProcEvent{}, fmt.Errorf("process event of %d bytes", len(rec.RawSample))
	}
	le := binary.LittleEndian
	return ProcEvent{PID: int(le.Uint32(rec.RawSample)), Kind: ProcKind(le.Uint32(rec.RawSample[4:])), Time: le.Uint64(rec.RawSample[8:])}, nil
}

// Lost counts the events the kernel had no room for.
func (w *ProcWatch) Lost() (uint64, error) {
	var perCPU []uint64
	if err := w.objs.ProcLost.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("read lost process events: %w", err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// Close detaches the programs and ends Read.
func (w *ProcWatch) Close() error {
	var errs []error
	if w.rd != nil {
		errs = append(errs, w.rd.Close())
	}
	for _, l := range w.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, w.objs.Close())
	return errors.Join(errs...)
}

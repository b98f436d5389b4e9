// Package discover tells the host-wide daemon which processes run, and when
// they start and end: a look at /proc, then the kernel's exec and exit
// events as they happen (bpf.ProcWatch) rather than rescans. The programs
// are attached before /proc is read, so a process that starts while the
// agent starts is reported (perhaps twice), never missed.
package discover

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/tcagent/tcagent/bpf"
)

// Kind is what an Event reports.
type Kind int

const (
	// Started: the process runs a new program (it execed, or it was
	// running when the watch began).
	Started Kind = iota + 1
	// Exited: the process is gone.
	Exited
	// Synced follows the events of the processes running when the watch
	// began (PID is 0).
	Synced
)

// Event is a process that started or exited.
type Event struct {
	PID  int
	Kind Kind
	// Existing marks the processes found running when the watch began.
	Existing bool
	// Time is when the kernel saw it (CLOCK_MONOTONIC, ns; 0 for the
	// existing ones).
	Time uint64
}

// Watcher reports process events on Events until Close.
type Watcher struct {
	procs  *bpf.ProcWatch
	events chan Event
	stop   chan struct{} // closed by Close: run sends no more
	done   chan struct{} // closed when run returned
}

// Start begins watching. The events of processes already running come
// first, then the live ones in the order the kernel saw them.
func Start() (*Watcher, error) {
	procs, err := bpf.WatchProcs()
	if err != nil {
		return nil, err
	}
	running, err := scan()
	if err != nil {
		procs.Close()
		return nil, err
	}
	w := &Watcher{procs: procs, events: make(chan Event, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(running)
	return w, nil
}

// MemoryLocked returns the kernel memory the watch's maps lock.
func (w *Watcher) MemoryLocked() (uint64, error) { return bpf.Memlock(w.procs.Maps()...) }

// Events delivers the events; it is closed after Close. A consumer that
// falls behind makes the kernel drop events, counted by Lost.
func (w *Watcher) Events() <-chan Event { return w.events }

// Lost counts the events the kernel had no room for.
func (w *Watcher) Lost() (uint64, error) { return w.procs.Lost() }

// Close stops the watch and closes Events.
func (w *Watcher) Close() error {
	close(w.stop)
	err := w.procs.Close()
	<-w.done
	return err
}

// send delivers ev, unless the watch is closing.
func (w *Watcher) send(ev Event) bool {
	select {
	case w.events <- ev:
		return true
	case <-w.stop:
		return false
	}
}

func (w *Watcher) run(running []int) {
	defer close(w.done)
	defer close(w.events)
	for _, pid := range running {
		if !w.send(Event{PID: pid, Kind: Started, Existing: true}) {
			return
		}
	}
	if !w.send(Event{Kind: Synced}) {
		return
	}
	for {
		ev, err := w.procs.Read()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			continue // a short record: the kernel writes whole ones
		}
		kind := Started
		if ev.Kind == bpf.ProcExit {
			kind = Exited
		}
		if !w.send(Event{PID: ev.PID, Kind: kind, Time: ev.Time}) {
			return
		}
	}
}

// scan lists the processes running now.
func scan() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

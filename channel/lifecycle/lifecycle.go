// Package lifecycle rebuilds each traced call's lifecycle from the raw entry
// and return events of the kernel, per goroutine, and publishes it on the
// call's TracingChannel.
//
// A goroutine's open calls form a stack ordered by depth (distance from the
// goroutine's stack top). A return matches the open call at its depth; calls
// above it whose returns were never seen (lost, or unwound) are ended first,
// marked, so that spans never stay open or nest wrongly because an event went
// missing.
package lifecycle

import (
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tcagent/tcagent/channel"
)

// Kind is an event's kind.
type Kind uint8

// Event kinds.
const (
	Start Kind = iota + 1
	End
)

// Event is one decoded kernel event.
type Event struct {
	Kind      Kind
	Time      time.Time
	Goroutine uint64
	Depth     uint64
	Probe     uint32
	// Attributes captured by the event (arguments at start, results at end).
	Attributes []attribute.KeyValue
	// Err is the error the call returned, nil for none.
	Err error
}

// Probe is what the tracker publishes a probe's calls on.
type Probe struct {
	Channel *channel.TracingChannel
	Name    string
	// Info is handed to subscribers in Payload.Info.
	Info any
}

// Reasons a call was ended by the tracker (Payload.EndReason).
const (
	EndLost   = "return_lost"  // its return was never seen
	EndDetach = "agent_detach" // the agent detached while it was open
	EndExit   = "process_exit" // the process exited while it was open
)

// Stats counts what the tracker could not use.
type Stats struct {
	Events        uint64
	UnknownProbe  uint64 // events of probes not registered
	UnmatchedEnds uint64 // ends with no open call at their depth
	LostEnds      uint64 // calls ended because their return was never seen
}

type frame struct {
	probe *Probe
	id    uint32
	depth uint64
	p     *channel.Payload
}

type goroutine struct {
	exec  *channel.Exec
	stack []frame
}

// Tracker rebuilds lifecycles. It is not safe for concurrent use: events of
// one process are fed in order by one reader.
type Tracker struct {
	probes     map[uint32]*Probe
	goroutines map[uint64]*goroutine
	stats      Stats
}

// New returns a Tracker for the given probes, by probe id.
func New(probes map[uint32]*Probe) *Tracker {
	return &Tracker{probes: probes, goroutines: make(map[uint64]*goroutine)}
}

// Stats returns the counts so far.
func (t *Tracker) Stats() Stats { return t.stats }

// OpenCalls returns how many calls are open.
func (t *Tracker) OpenCalls() int {
	n := 0
	for _, g := range t.goroutines {
		n += len(g.stack)
	}
	return n
}

// Goroutines returns how many goroutines the tracker holds state for.
func (t *Tracker) Goroutines() int { return len(t.goroutines) }

// Handle feeds one event.
func (t *Tracker) Handle(ev *Event) {
	t.stats.Events++
	pr := t.probes[ev.Probe]
	if pr == nil {
		t.stats.UnknownProbe++
		return
	}
	switch ev.Kind {
	case Start:
		t.start(pr, ev)
	case End:
		t.end(ev)
	}
}

func (t *Tracker) start(pr *Probe, ev *Event) {
	g := t.goroutines[ev.Goroutine]
	if g == nil {
		g = &goroutine{exec: channel.NewExec()}
		t.goroutines[ev.Goroutine] = g
	}
	// Frames at this depth or deeper cannot be open any more: a call only
	// starts deeper than its callers. Their returns were lost. (Prologue
	// re-runs never get here: the BPF side drops them.)
	for n := len(g.stack); n > 0; n-- {
		top := &g.stack[n-1]
		if top.depth < ev.Depth {
			break
		}
		t.abandon(g, EndLost, ev.Time)
	}
	p := &channel.Payload{
		Name:       pr.Name,
		Goroutine:  ev.Goroutine,
		Time:       ev.Time,
		StartTime:  ev.Time,
		Attributes: ev.Attributes,
		Info:       pr.Info,
	}
	g.stack = append(g.stack, frame{probe: pr, id: ev.Probe, depth: ev.Depth, p: p})
	pr.Channel.Start(g.exec, p)
}

func (t *Tracker) end(ev *Event) {
	g := t.goroutines[ev.Goroutine]
	i := -1
	if g != nil {
		for j := len(g.stack) - 1; j >= 0; j-- {
			if g.stack[j].depth == ev.Depth && g.stack[j].id == ev.Probe {
				i = j
				break
			}
			if g.stack[j].depth < ev.Depth {
				break
			}
		}
	}
	if i < 0 {
		t.stats.UnmatchedEnds++
		return
	}
	for len(g.stack)-1 > i {
		t.abandon(g, EndLost, ev.Time)
	}
	f := g.stack[i]
	p := f.p
	p.Time = ev.Time
	p.EndAttributes = ev.Attributes
	if ev.Err != nil {
		p.SetError(ev.Err)
		f.probe.Channel.Error(p)
	} else {
		p.SetResult(nil)
	}
	f.probe.Channel.End(g.exec, p)
	t.pop(ev.Goroutine, g)
}

// abandon ends the top call of g, which will never see its return.
func (t *Tracker) abandon(g *goroutine, reason string, at time.Time) {
	f := g.stack[len(g.stack)-1]
	if reason == EndLost {
		t.stats.LostEnds++
	}
	f.p.Time = at
	f.p.EndReason = reason
	f.probe.Channel.End(g.exec, f.p)
	g.stack = g.stack[:len(g.stack)-1]
}

func (t *Tracker) pop(id uint64, g *goroutine) {
	g.stack = g.stack[:len(g.stack)-1]
	if len(g.stack) == 0 {
		delete(t.goroutines, id)
	}
}

// EndAll ends every open call, innermost first, with reason: for when the
// agent detaches or the process exits.
func (t *Tracker) EndAll(reason string, at time.Time) {
	for id, g := range t.goroutines {
		for len(g.stack) > 0 {
			t.abandon(g, reason, at)
		}
		delete(t.goroutines, id)
	}
}

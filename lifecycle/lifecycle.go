// Package lifecycle rebuilds each traced call's lifecycle from the raw events
// of the kernel, per goroutine, and publishes it on the call's
// TracingChannel.
//
// A goroutine's open calls form a stack ordered by depth (distance from the
// goroutine's stack top). A return matches the open call at its depth; calls
// above it whose returns were never seen were unwound (by a panic) or their
// returns lost, and are ended first, so that spans never stay open or nest
// wrongly because an event went missing.
//
// Goroutines are the async context: a goroutine created while its creator
// had a store active starts with a fork of that store, at any depth of
// lineage. Async probes end when their goroutines have all exited, or when a
// completion function receives the handle they returned.
package lifecycle

import (
	"time"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/reader"
)

// Async says when a probe's span ends.
type Async uint8

// Async modes.
const (
	Sync       Async = iota
	Goroutines       // when the call returned and its goroutines exited
	Completion       // when the completion probe receives the returned handle
)

// Probe is what the tracker publishes a probe's calls on.
type Probe struct {
	// Channel is nil for completion probes: they publish nothing of their
	// own.
	Channel *channel.TracingChannel
	Name    string
	Async   Async
	// CompletionID is, for Async == Completion, the id of the completion
	// probe.
	CompletionID uint32
}

// Reasons a call was ended by the tracker (Payload.EndReason).
const (
	EndLost          = "return_lost"    // its return was never seen
	EndEventsLost    = "events_lost"    // the kernel lost events of its goroutine
	EndGoroutineExit = "goroutine_exit" // its goroutine exited without it returning (runtime.Goexit)
	EndDetach        = "agent_detach"   // the agent detached while it was open
	EndExit          = "process_exit"   // the process exited while it was open
	EndMaxAge        = "max_age"        // open longer than Limits.MaxSpanAge
)

// PanicErrorType is the exception type of calls unwound by a panic.
const PanicErrorType = "panic"

// Limits bound what the tracker holds. Zero fields take the defaults.
type Limits struct {
	MaxOpenCalls  int           // default 100,000
	MaxGoroutines int           // default 100,000
	MaxPending    int           // async calls waiting to settle; default 100,000
	MaxSpanAge    time.Duration // default 10 minutes
}

func (l Limits) withDefaults() Limits {
	if l.MaxOpenCalls == 0 {
		l.MaxOpenCalls = 100_000
	}
	if l.MaxGoroutines == 0 {
		l.MaxGoroutines = 100_000
	}
	if l.MaxPending == 0 {
		l.MaxPending = 100_000
	}
	if l.MaxSpanAge == 0 {
		l.MaxSpanAge = 10 * time.Minute
	}
	return l
}

// Stats counts what the tracker could not use, and what it holds.
type Stats struct {
	Events             uint64
	UnknownProbe       uint64 // events of probes not registered
	UnmatchedEnds      uint64 // ends with no open call at their depth
	LostEnds           uint64 // calls ended because their return was never seen
	LostGoroutines     uint64 // goroutines whose state was reset because the kernel lost their events
	PanicUnwound       uint64 // calls ended by a panic
	Expired            uint64 // calls and async calls ended by the maximum age
	OverflowCalls      uint64 // starts dropped: too many open calls
	OverflowGoroutines uint64 // goroutines not tracked: too many
	OverflowPending    uint64 // async calls ended at return: too many pending
}

type frame struct {
	probe *Probe
	id    uint32
	depth uint64
	p     *channel.Payload
	// pend is the async state of a Goroutines probe's call.
	pend *pending
	// handle is a completion probe's receiver.
	handle uint64
	// expired frames were ended by the maximum age; their return only pops.
	expired bool
}

// pending is an async call that returned and waits to settle.
type pending struct {
	probe    *Probe
	p        *channel.Payload
	live     int  // goroutines started under it, not yet exited
	returned bool // the call itself returned
	settled  bool
	key      handleKey // Completion: where it is in handles
}

type handleKey struct {
	completion uint32
	handle     uint64
}

type goroutine struct {
	exec  *channel.Exec
	stack []frame
	// async are the Goroutines calls this goroutine counts toward.
	async []*pending
	// panicking is the message of a panic under way, and the depth of
	// gopanic's frame: events shallower than it mean it was recovered.
	panicking  string
	panicDepth uint64
	lost       uint32
	lastSeen   time.Time
}

// Tracker rebuilds lifecycles. It is not safe for concurrent use: events of
// one process are fed in order by one reader.
type Tracker struct {
	probes     map[uint32]*Probe
	limits     Limits
	goroutines map[uint64]*goroutine
	handles    map[handleKey]*pending
	waiting    map[*pending]struct{} // Goroutines calls returned, goroutines live
	open       int
	stats      Stats
	// free holds released goroutine states for reuse: most calls start on
	// a goroutine the tracker holds nothing for, and return it empty.
	free []*goroutine
	// payloads holds the payloads of sync calls that ended, for reuse: a
	// payload is the largest allocation of a call.
	payloads []*channel.Payload
}

const maxFree = 1024

// New returns a Tracker for the given probes, by probe id.
func New(probes map[uint32]*Probe, limits Limits) *Tracker {
	return &Tracker{
		probes:     probes,
		limits:     limits.withDefaults(),
		goroutines: make(map[uint64]*goroutine),
		handles:    make(map[handleKey]*pending),
		waiting:    make(map[*pending]struct{}),
	}
}

// Stats returns the counts so far.
func (t *Tracker) Stats() Stats { return t.stats }

// OpenCalls returns how many calls are open.
func (t *Tracker) OpenCalls() int { return t.open }

// Goroutines returns how many goroutines the tracker holds state for.
func (t *Tracker) Goroutines() int { return len(t.goroutines) }

// Pending returns how many async calls returned and wait to settle.
func (t *Tracker) Pending() int { return len(t.handles) + len(t.waiting) }

// Handle feeds one event.
func (t *Tracker) Handle(ev *reader.Event) {
	t.stats.Events++
	switch ev.Kind {
	case reader.GoCreate:
		t.goCreate(ev)
		return
	case reader.GoExit:
		t.goExit(ev)
		return
	case reader.Panic:
		if g := t.goroutines[ev.Goroutine]; g != nil && t.current(g, ev) {
			if g.panicking == "" || ev.Depth < g.panicDepth {
				g.panicDepth = ev.Depth
			}
			g.panicking = ev.PanicMessage
		}
		return
	}
	pr := t.probes[ev.Probe]
	if pr == nil {
		t.stats.UnknownProbe++
		return
	}
	switch ev.Kind {
	case reader.Start:
		t.start(pr, ev)
	case reader.End:
		t.end(pr, ev)
	}
}

// current checks g against the kernel's loss count: if events of g were
// lost since the last one seen, what the tracker knows of g is stale, and it
// ends g's calls and forgets what g inherited rather than risk parenting new
// spans wrongly. It reports whether g is still tracked.
func (t *Tracker) current(g *goroutine, ev *reader.Event) bool {
	g.lastSeen = ev.Time
	if ev.Lost == g.lost {
		return true
	}
	t.stats.LostGoroutines++
	t.unwind(g, 0, EndEventsLost, ev.Time)
	g.lost = ev.Lost
	g.exec = channel.NewExec()
	t.leaveAsync(g, ev.Time)
	return true
}

func (t *Tracker) goroutine(id uint64, ev *reader.Event) *goroutine {
	g := t.goroutines[id]
	if g != nil {
		t.current(g, ev)
		return g
	}
	if len(t.goroutines) >= t.limits.MaxGoroutines {
		t.stats.OverflowGoroutines++
		return nil
	}
	g = t.newGoroutine()
	g.lost, g.lastSeen = ev.Lost, ev.Time
	t.goroutines[id] = g
	return g
}

func (t *Tracker) newGoroutine() *goroutine {
	if n := len(t.free); n > 0 {
		g := t.free[n-1]
		t.free = t.free[:n-1]
		return g
	}
	return &goroutine{exec: channel.NewExec()}
}

// recycle keeps g's memory for a later goroutine.
func (t *Tracker) recycle(g *goroutine) {
	if len(t.free) >= maxFree {
		return
	}
	clear(g.stack)
	g.exec.Reset()
	*g = goroutine{exec: g.exec, stack: g.stack[:0]}
	t.free = append(t.free, g)
}

func (t *Tracker) start(pr *Probe, ev *reader.Event) {
	g := t.goroutine(ev.Goroutine, ev)
	if g == nil {
		return
	}
	// Frames at this depth or deeper cannot be open any more: a call only
	// starts deeper than its callers. (Prologue re-runs never get here: the
	// BPF side drops them.)
	t.unwind(g, ev.Depth, EndLost, ev.Time)
	if g.panicking != "" && ev.Depth < g.panicDepth {
		g.panicking = "" // recovered: execution goes on above the panic
	}
	if t.open >= t.limits.MaxOpenCalls {
		t.stats.OverflowCalls++
		return
	}
	f := frame{probe: pr, id: ev.Probe, depth: ev.Depth, handle: ev.Handle}
	t.open++
	if pr.Channel == nil { // a completion probe: only its receiver matters
		g.stack = append(g.stack, f)
		return
	}
	f.p = t.payload()
	f.p.Name, f.p.Goroutine, f.p.Time, f.p.StartTime = pr.Name, ev.Goroutine, ev.Time, ev.Time
	f.p.TraceID, f.p.SpanID, f.p.Caller = ev.TraceID, ev.SpanID, ev.Caller
	f.p.SetAttributes(ev.Attributes)
	if pr.Async == Goroutines {
		f.pend = &pending{probe: pr, p: f.p}
	}
	g.stack = append(g.stack, f)
	pr.Channel.Start(g.exec, f.p)
}

// unwind ends, innermost first, every open call of g at depth >= depth: their
// returns will not come. Under a panic they end with its error.
func (t *Tracker) unwind(g *goroutine, depth uint64, reason string, at time.Time) {
	for n := len(g.stack); n > 0 && g.stack[n-1].depth >= depth; n-- {
		t.abandon(g, reason, at)
	}
}

func (t *Tracker) end(pr *Probe, ev *reader.Event) {
	g := t.goroutines[ev.Goroutine]
	if g != nil {
		t.current(g, ev)
	}
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
	t.unwind(g, ev.Depth+1, EndLost, ev.Time)
	if g.panicking != "" && ev.Depth < g.panicDepth {
		g.panicking = "" // recovered: this call returns normally
	}
	f := g.stack[len(g.stack)-1]
	g.stack = g.stack[:len(g.stack)-1]
	t.open--
	if pr.Channel == nil {
		t.complete(f, ev)
	} else if !f.expired {
		t.publishEnd(g, f, ev)
	} else {
		f.probe.Channel.End(g.exec, f.p) // restores the store; the span already ended
	}
	t.release(ev.Goroutine, g)
}

func (t *Tracker) publishEnd(g *goroutine, f frame, ev *reader.Event) {
	p, ch := f.p, f.probe.Channel
	p.Time = ev.Time
	p.SetEndAttributes(ev.Attributes)
	if ev.Err != nil {
		p.SetError(ev.Err)
		ch.Error(p)
		ch.End(g.exec, p) // a failed call ends at end, async or not
		if f.pend == nil {
			t.reuse(p)
		}
		return
	}
	switch f.probe.Async {
	case Goroutines:
		ch.End(g.exec, p) // no result: pending
		f.pend.returned = true
		if f.pend.live == 0 {
			t.settle(f.pend, nil, ev.Time)
		} else {
			t.waiting[f.pend] = struct{}{}
		}
	case Completion:
		if ev.Handle == 0 {
			p.SetResult(nil) // no handle to wait for: settled now
			ch.End(g.exec, p)
			return
		}
		ch.End(g.exec, p)
		if len(t.handles)+len(t.waiting) >= t.limits.MaxPending {
			t.stats.OverflowPending++
			p.EndReason = "pending_overflow"
			ch.AsyncEnd(p)
			return
		}
		k := handleKey{f.probe.CompletionID, ev.Handle}
		if old := t.handles[k]; old != nil {
			// The handle was reused before completing: the earlier call
			// cannot complete any more.
			t.settle(old, nil, ev.Time)
		}
		pd := &pending{probe: f.probe, p: p, returned: true, key: k}
		t.handles[k] = pd
	default:
		p.SetResult(nil)
		ch.End(g.exec, p)
		t.reuse(p)
	}
}

// payload returns a payload to fill: a reused one when there is one.
func (t *Tracker) payload() *channel.Payload {
	if n := len(t.payloads); n > 0 {
		p := t.payloads[n-1]
		t.payloads = t.payloads[:n-1]
		p.Reset()
		return p
	}
	return new(channel.Payload)
}

// reuse keeps p, whose call ended with its span: end is the last event
// published on a sync call's payload, and subscribers keep nothing of it
// past that (channel.Payload says so).
func (t *Tracker) reuse(p *channel.Payload) {
	if len(t.payloads) < maxFree {
		t.payloads = append(t.payloads, p)
	}
}

// complete handles the return of a completion probe: the call whose handle
// is its receiver settles, with the completion's error if it failed.
func (t *Tracker) complete(f frame, ev *reader.Event) {
	k := handleKey{f.id, f.handle}
	pd := t.handles[k]
	if pd == nil {
		return
	}
	delete(t.handles, k)
	t.settle(pd, ev.Err, ev.Time)
}

// settle publishes asyncStart and asyncEnd of a pending call (error first if
// it failed).
func (t *Tracker) settle(pd *pending, err error, at time.Time) {
	if pd.settled {
		return
	}
	pd.settled = true
	delete(t.waiting, pd)
	if pd.key != (handleKey{}) && t.handles[pd.key] == pd {
		delete(t.handles, pd.key)
	}
	p, ch := pd.p, pd.probe.Channel
	p.Time = at
	if err != nil {
		p.SetError(err)
		ch.Error(p)
	} else {
		p.SetResult(nil)
	}
	ch.AsyncStart(p)
	ch.AsyncEnd(p)
}

// abandon ends the top call of g, which will never see its return.
func (t *Tracker) abandon(g *goroutine, reason string, at time.Time) {
	f := g.stack[len(g.stack)-1]
	g.stack = g.stack[:len(g.stack)-1]
	t.open--
	if f.probe.Channel == nil || f.expired {
		if f.expired {
			f.probe.Channel.End(g.exec, f.p)
		}
		return
	}
	p, ch := f.p, f.probe.Channel
	p.Time = at
	if g.panicking != "" && reason != EndEventsLost {
		t.stats.PanicUnwound++
		p.SetError(&channel.Error{Type: PanicErrorType, Message: g.panicking})
		ch.Error(p)
		ch.End(g.exec, p)
	} else {
		if reason == EndLost {
			t.stats.LostEnds++
		}
		p.EndReason = reason
		ch.End(g.exec, p)
	}
	if f.pend != nil {
		// The span ended at end (with the panic's error or the reason);
		// goroutines still running under the call no longer matter.
		f.pend.returned, f.pend.settled = true, true
	}
}

func (t *Tracker) goCreate(ev *reader.Event) {
	pg := t.goroutines[ev.Goroutine]
	if pg == nil {
		return // nothing to inherit
	}
	t.current(pg, ev)
	var async []*pending
	for _, pd := range pg.async {
		if !pd.settled {
			async = append(async, pd)
		}
	}
	for _, f := range pg.stack {
		if f.pend != nil && !f.pend.returned {
			async = append(async, f.pend)
		}
	}
	if len(async) == 0 && !pg.exec.HasValues() {
		return
	}
	if len(t.goroutines) >= t.limits.MaxGoroutines {
		t.stats.OverflowGoroutines++
		return
	}
	if old := t.goroutines[ev.Child]; old != nil {
		t.dropGoroutine(ev.Child, old, EndLost, ev.Time)
	}
	for _, pd := range async {
		pd.live++
	}
	t.goroutines[ev.Child] = &goroutine{exec: pg.exec.Fork(), async: async, lastSeen: ev.Time}
}

func (t *Tracker) goExit(ev *reader.Event) {
	g := t.goroutines[ev.Goroutine]
	if g == nil {
		return
	}
	t.current(g, ev)
	t.dropGoroutine(ev.Goroutine, g, EndGoroutineExit, ev.Time)
}

// dropGoroutine ends what is open on g and forgets it.
func (t *Tracker) dropGoroutine(id uint64, g *goroutine, reason string, at time.Time) {
	t.unwind(g, 0, reason, at)
	t.leaveAsync(g, at)
	delete(t.goroutines, id)
}

// leaveAsync stops g counting toward the async calls it was started under.
func (t *Tracker) leaveAsync(g *goroutine, at time.Time) {
	for _, pd := range g.async {
		pd.live--
		if pd.live == 0 && pd.returned {
			t.settle(pd, nil, at)
		}
	}
	g.async = nil
}

// release forgets g when nothing about it matters any more.
func (t *Tracker) release(id uint64, g *goroutine) {
	if len(g.stack) == 0 && len(g.async) == 0 && g.panicking == "" && !g.exec.HasValues() {
		delete(t.goroutines, id)
		t.recycle(g)
	}
}

// Expire ends the calls and async calls open since before now minus the
// maximum span age, marked, and forgets idle goroutines not seen for as long
// (their exit was lost). Call it periodically.
func (t *Tracker) Expire(now time.Time) {
	limit := now.Add(-t.limits.MaxSpanAge)
	for id, g := range t.goroutines {
		for i := range g.stack {
			f := &g.stack[i]
			if f.expired || f.p == nil || !f.p.StartTime.Before(limit) {
				continue
			}
			f.expired = true
			t.stats.Expired++
			f.p.Time = now
			f.p.EndReason = EndMaxAge
			f.probe.Channel.AsyncEnd(f.p) // ends the span; the store stays until the return
			if f.pend != nil {
				f.pend.settled = true
			}
		}
		if len(g.stack) == 0 && g.lastSeen.Before(limit) {
			t.leaveAsync(g, now)
			delete(t.goroutines, id)
		}
	}
	expire := func(pd *pending) {
		if !pd.p.StartTime.Before(limit) {
			return
		}
		t.stats.Expired++
		pd.settled = true
		delete(t.waiting, pd)
		if t.handles[pd.key] == pd {
			delete(t.handles, pd.key)
		}
		pd.p.Time = now
		pd.p.EndReason = EndMaxAge
		pd.probe.Channel.AsyncEnd(pd.p)
	}
	for _, pd := range t.handles {
		expire(pd)
	}
	for pd := range t.waiting {
		expire(pd)
	}
}

// EndAll ends every open call, innermost first, and every async call still
// waiting, with reason: for when the agent detaches or the process exits.
// Calls a panic was unwinding end with its error.
func (t *Tracker) EndAll(reason string, at time.Time) {
	for id, g := range t.goroutines {
		t.unwind(g, 0, reason, at)
		g.async = nil
		delete(t.goroutines, id)
	}
	end := func(pd *pending) {
		pd.settled = true
		pd.p.Time = at
		pd.p.EndReason = reason
		pd.probe.Channel.AsyncEnd(pd.p)
	}
	for k, pd := range t.handles {
		delete(t.handles, k)
		end(pd)
	}
	for pd := range t.waiting {
		delete(t.waiting, pd)
		end(pd)
	}
}

package reader

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

// ErrorMeaning says what an error a probe's call returned means: nil when
// it is no failure (a cache miss, say), or the error to report. ret are
// the call's decoded return attributes.
type ErrorMeaning func(e *channel.Error, ret []attribute.KeyValue) error

// DecoderConfig is what one process's Decoder interprets records with.
type DecoderConfig struct {
	// Probes by id, as the image compiled them: their recipes say what
	// each value of a record holds.
	Probes []*probes.Probe
	// Base is the kernel's probe id of Probes[0]: the executable's ids
	// are a range of the ids every executable shares. Events carry the
	// image's own ids (minus Base).
	Base uint32
	// IDs is how many ids from Base are the executable's: its Probes' and
	// its runtime probes' (goroutine creation and exit, panics), which
	// follow them.
	IDs uint32
	// Target is the process's executable, for type names and read-only
	// literals (may be nil: then neither can be read).
	Target Target
	// Clock turns the records' times into wall time.
	Clock Clock
	// ErrorOf[id], when set, says what probe id's returned errors mean
	// (a built-in's rule, e.g. redis.Nil is no error); nil or absent: an
	// error is a failure, as read.
	ErrorOf []ErrorMeaning
}

// Decoder turns one traced process's records into Events. It counts the
// values it could not trust; it is used from the reader's goroutine only.
type Decoder struct {
	cfg        DecoderConfig
	unreadable Unreadable
	ev         Event
	// scratch receives each record's decoded attributes; the lifecycle
	// copies them into the call's payload.
	scratch [2 * bpf.MaxCaptures]attribute.KeyValue
}

// NewDecoder returns a decoder for the records of one process.
func NewDecoder(cfg DecoderConfig) *Decoder { return &Decoder{cfg: cfg} }

// Owns reports whether probe is one of the decoder's executable's (in
// [Base, Base+IDs) as the kernel numbers them).
func (d *Decoder) Owns(probe uint32) bool {
	return probe >= d.cfg.Base && probe-d.cfg.Base < d.cfg.IDs
}

// Unreadable returns the counts of values that failed a sanity check so
// far. Safe from any goroutine.
func (d *Decoder) Unreadable() UnreadableCounts { return d.unreadable.Counts() }

// Decode interprets rec with its probe's recipe. The event is reused by
// the next call. It returns false for a record no probe or kind explains:
// the caller counts it as a decode error.
func (d *Decoder) Decode(rec *Record) (*Event, bool) {
	ev := &d.ev
	if rec.Probe < d.cfg.Base {
		return nil, false
	}
	id := rec.Probe - d.cfg.Base
	*ev = Event{Kind: rec.Kind, Time: d.cfg.Clock.Wall(rec.Time), Goroutine: rec.Goroutine, Depth: rec.Depth, Probe: id, Lost: rec.Lost}
	switch rec.Kind {
	case GoCreate:
		ev.Child = rec.Values[0].A
		return ev, true
	case GoExit:
		return ev, true
	case Panic:
		ev.PanicMessage = "panic: " + panicValue(rec, d.cfg.Target, &d.unreadable)
		return ev, true
	}
	if int(id) >= len(d.cfg.Probes) {
		return nil, false
	}
	p := d.cfg.Probes[id]
	switch rec.Kind {
	case Start:
		if len(p.EntryAttrs) > 0 {
			ev.Attributes = attributes(p, rec, true, d.scratch[:0], d.cfg.Target, &d.unreadable)
		}
		if i := len(p.Recipe.Entry) - 1; p.Recipe.Trace && i < rec.NValues {
			ev.TraceID, ev.SpanID, ev.Caller = rec.TraceContext(i)
		}
		if p.ReceiverCapture >= 0 && p.ReceiverCapture < rec.NValues {
			ev.Handle = rec.Values[p.ReceiverCapture].A
		}
	case End:
		if len(p.ReturnAttrs) > 0 {
			ev.Attributes = attributes(p, rec, false, d.scratch[:0], d.cfg.Target, &d.unreadable)
		}
		if e := returnedError(p, rec, d.cfg.Target, &d.unreadable); e != nil {
			if int(id) >= len(d.cfg.ErrorOf) || d.cfg.ErrorOf[id] == nil {
				ev.Err = e
			} else if err := d.cfg.ErrorOf[id](e, ev.Attributes); err != nil {
				ev.Err = err
			}
		}
		if p.HandleCapture >= 0 && p.HandleCapture < rec.NValues {
			ev.Handle = rec.Values[p.HandleCapture].A
		}
	default:
		return nil, false
	}
	return ev, true
}

// Clock converts the kernel's CLOCK_MONOTONIC record times to wall time.
type Clock struct{ offset int64 }

// NewClock reads the offset between the two clocks now.
func NewClock() Clock {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return Clock{offset: time.Now().UnixNano() - ts.Nano()}
}

// Wall is the wall time of a CLOCK_MONOTONIC time in ns.
func (c Clock) Wall(mono uint64) time.Time { return time.Unix(0, int64(mono)+c.offset) }

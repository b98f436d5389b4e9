package reader

import (
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

// testProbes: 0 captures an int and, with --propagate, the trace context at
// entry, and its returned error at return; 1 returns a completion handle;
// 2 is a completion probe whose receiver is the handle.
func testProbes() []*probes.Probe {
	return []*probes.Probe{
		{ID: 0, ErrorCapture: 1, HandleCapture: -1, ReceiverCapture: -1,
			EntryAttrs:  []probes.CapturedAttr{{Key: "n", Type: "int", Size: 8}},
			ReturnAttrs: []probes.CapturedAttr{{Key: "code", Type: "int", Size: 8}},
			Recipe: bpf.Recipe{Trace: true, Entry: []bpf.Capture{{Kind: bpf.CapReg}, {Kind: bpf.CapTrace}},
				Return: []bpf.Capture{{Kind: bpf.CapReg}, {Kind: bpf.CapError, Slot: 1}}}},
		{ID: 1, ErrorCapture: -1, HandleCapture: 0, ReceiverCapture: -1, Recipe: bpf.Recipe{Return: []bpf.Capture{{Kind: bpf.CapReg}}}},
		{ID: 2, ErrorCapture: -1, HandleCapture: -1, ReceiverCapture: 0, IsCompletion: true, Recipe: bpf.Recipe{Entry: []bpf.Capture{{Kind: bpf.CapReg}}}},
	}
}

func decoded(t *testing.T, d *Decoder, kind Kind, probe uint32, vals ...rawValue) *Event {
	t.Helper()
	rec := event(t, vals...)
	rec.Kind, rec.Probe, rec.Goroutine, rec.Depth, rec.Lost, rec.Time = kind, probe, 9, 4096, 2, 1_000
	ev, ok := d.Decode(rec)
	if !ok {
		t.Fatalf("kind %d probe %d not decoded", kind, probe)
	}
	if ev.Kind != kind || ev.Probe != probe || ev.Goroutine != 9 || ev.Depth != 4096 || ev.Lost != 2 {
		t.Fatalf("header %+v, want kind %d probe %d goroutine 9 depth 4096 lost 2", ev, kind, probe)
	}
	return ev
}

// TestDecoderStartEnd: a start carries its entry captures and the trace
// context the kernel made; an end its return captures and its error.
func TestDecoderStartEnd(t *testing.T) {
	d := NewDecoder(DecoderConfig{Probes: testProbes(), Target: typed(names)})
	ev := decoded(t, d, Start, 0, rawValue{a: 42}, rawValue{a: 1, b: 2, c: 3, d: 4})
	if len(ev.Attributes) != 1 || ev.Attributes[0] != attribute.Int64("n", 42) {
		t.Fatalf("start attributes %v, want n=42", ev.Attributes)
	}
	if ev.TraceID != ([16]byte{7: 1, 15: 2}) || ev.SpanID != ([8]byte{7: 3}) || !ev.Caller.IsValid() || ev.Caller.SpanID() != ([8]byte{7: 4}) {
		t.Fatalf("trace context %s %s caller %v, want ids 1,2 / 3, caller 4", ev.TraceID, ev.SpanID, ev.Caller)
	}
	const ptr = 0xc000012000
	ev = decoded(t, d, End, 0, rawValue{a: 7}, rawValue{a: 1, b: typErrorString, c: 4, d: ptr, str: "nope"})
	var ce *channel.Error
	if len(ev.Attributes) != 1 || ev.Attributes[0] != attribute.Int64("code", 7) || !errors.As(ev.Err, &ce) || ce.Message != "nope" {
		t.Fatalf("end attributes %v error %v, want code=7 and the error nope", ev.Attributes, ev.Err)
	}
	if ev.TraceID.IsValid() || ev.Caller.IsValid() {
		t.Fatalf("an end carries no trace context, got %s %v", ev.TraceID, ev.Caller)
	}
	ev = decoded(t, d, End, 0, rawValue{a: 0}, rawValue{})
	if ev.Err != nil {
		t.Fatalf("a nil error decoded as %v", ev.Err)
	}
}

// TestDecoderErrorOf: the wiring's rule for a probe says what its errors
// mean: no failure (nil), another error, or — for the probes without one —
// the error as read.
func TestDecoderErrorOf(t *testing.T) {
	const ptr = 0xc000012000
	failed := rawValue{a: 1, b: typErrorString, c: 4, d: ptr, str: "miss"}
	replaced := errors.New("replaced")
	var gotRet []attribute.KeyValue
	for _, c := range []struct {
		name    string
		errorOf []ErrorMeaning
		want    string // "" for no error
	}{
		{"none", nil, "miss"},
		{"other probes only", make([]ErrorMeaning, 1), "miss"},
		{"no failure", []ErrorMeaning{func(e *channel.Error, ret []attribute.KeyValue) error { gotRet = ret; return nil }}, ""},
		{"another error", []ErrorMeaning{func(*channel.Error, []attribute.KeyValue) error { return replaced }}, "replaced"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(DecoderConfig{Probes: testProbes(), Target: typed(names), ErrorOf: c.errorOf})
			ev := decoded(t, d, End, 0, rawValue{a: 5}, failed)
			switch {
			case c.want == "" && ev.Err != nil, c.want != "" && (ev.Err == nil || ev.Err.Error() != c.want):
				t.Fatalf("error %v, want %q", ev.Err, c.want)
			}
		})
	}
	if len(gotRet) != 1 || gotRet[0] != attribute.Int64("code", 5) {
		t.Errorf("the rule saw return attributes %v, want code=5", gotRet)
	}
}

// TestDecoderHandles: a completion-handle probe's end carries the handle
// it returned, the completion's start its receiver.
func TestDecoderHandles(t *testing.T) {
	d := NewDecoder(DecoderConfig{Probes: testProbes()})
	if ev := decoded(t, d, End, 1, rawValue{a: 0xA0}); ev.Handle != 0xA0 || ev.Err != nil {
		t.Fatalf("end handle %#x error %v, want 0xa0 and none", ev.Handle, ev.Err)
	}
	if ev := decoded(t, d, Start, 2, rawValue{a: 0xA0}); ev.Handle != 0xA0 {
		t.Fatalf("completion receiver %#x, want 0xa0", ev.Handle)
	}
}

// TestDecoderRuntime: goroutine creation names the child; a panic its
// value; neither needs a probe of the spec.
func TestDecoderRuntime(t *testing.T) {
	d := NewDecoder(DecoderConfig{Probes: testProbes(), Target: typed(names)})
	if ev := decoded(t, d, GoCreate, 99, rawValue{a: 1234}); ev.Child != 1234 {
		t.Fatalf("child %d, want 1234", ev.Child)
	}
	decoded(t, d, GoExit, 99)
	const ptr = 0xc000012000
	if ev := decoded(t, d, Panic, 100, rawValue{a: typString, b: typString, c: 4, d: ptr, str: "boom"}); ev.PanicMessage != "panic: boom" {
		t.Fatalf("panic message %q", ev.PanicMessage)
	}
	if ev := decoded(t, d, Panic, 100, rawValue{a: typCodeError, b: typCodeError}); ev.PanicMessage != "panic: *main.codeError" {
		t.Fatalf("panic message %q", ev.PanicMessage)
	}
	if n := d.Unreadable(); n != (UnreadableCounts{Panic: 1}) {
		t.Errorf("unreadable %+v, want the one panic value", n)
	}
}

// TestDecoderRejects: a record of no known probe or kind is not an event.
func TestDecoderRejects(t *testing.T) {
	d := NewDecoder(DecoderConfig{Probes: testProbes()})
	for _, c := range []struct {
		kind  Kind
		probe uint32
	}{{Start, 3}, {End, 1 << 20}, {Kind(9), 0}, {Kind(0), 0}} {
		rec := event(t)
		rec.Kind, rec.Probe = c.kind, c.probe
		if ev, ok := d.Decode(rec); ok {
			t.Errorf("kind %d probe %d decoded as %+v", c.kind, c.probe, ev)
		}
	}
}

// TestDecoderBase: an executable's probes hold a range of the kernel's
// probe ids, its probes' then its runtime probes'; its decoder owns that
// range, takes its records to its own probes (event ids minus Base) and
// rejects the ids below or past it.
func TestDecoderBase(t *testing.T) {
	d := NewDecoder(DecoderConfig{Probes: testProbes(), Base: 100, IDs: 5})
	for id, want := range map[uint32]bool{99: false, 100: true, 102: true, 103: true, 104: true, 105: false, 0: false} {
		if got := d.Owns(id); got != want {
			t.Errorf("Owns(%d) = %v, want %v (ids 100 to 104)", id, got, want)
		}
	}
	rec := event(t)
	rec.Kind, rec.Probe = GoExit, 103
	if ev, ok := d.Decode(rec); !ok || ev.Kind != GoExit || ev.Probe != 3 {
		t.Fatalf("a goroutine exit of the runtime probe 103 decoded as %+v (%v), want its probe 3", ev, ok)
	}
	rec = event(t, rawValue{a: 42}, rawValue{})
	rec.Kind, rec.Probe = Start, 100
	if ev, ok := d.Decode(rec); !ok || ev.Probe != 0 || len(ev.Attributes) != 1 || ev.Attributes[0] != attribute.Int64("n", 42) {
		t.Fatalf("probe 100 of an image at 100 decoded as %+v (%v), want its probe 0 with n=42", ev, ok)
	}
	rec = event(t, rawValue{a: 5})
	rec.Kind, rec.Probe = End, 101
	if ev, ok := d.Decode(rec); !ok || ev.Probe != 1 || ev.Handle != 5 {
		t.Fatalf("probe 101 decoded as %+v (%v), want its probe 1 with handle 5", ev, ok)
	}
	for _, id := range []uint32{0, 99, 103} {
		rec = event(t)
		rec.Kind, rec.Probe = Start, id
		if ev, ok := d.Decode(rec); ok {
			t.Errorf("probe %d, outside [100, 103), decoded as %+v", id, ev)
		}
	}
}

// TestDecoderReuses: decoding allocates nothing for a record of integers,
// the event is reused, and what the previous record said does not leak
// into the next.
func TestDecoderReuses(t *testing.T) {
	d := NewDecoder(DecoderConfig{Probes: testProbes(), Clock: NewClock()})
	start := event(t, rawValue{a: 42}, rawValue{a: 1, b: 2, c: 3, d: 4})
	start.Kind = Start
	end := event(t, rawValue{a: 0xA0})
	end.Kind, end.Probe = End, 1
	a, _ := d.Decode(start)
	b, _ := d.Decode(end)
	if a != b || b.TraceID.IsValid() || b.Caller.IsValid() || len(b.Attributes) != 0 || b.Handle != 0xA0 {
		t.Fatalf("second event %+v kept the first's fields", b)
	}
	if n := testing.AllocsPerRun(100, func() { d.Decode(start); d.Decode(end) }); n != 0 {
		t.Fatalf("Decode allocates %v times", n)
	}
}

// TestClock: a CLOCK_MONOTONIC time read now is now on the wall clock.
func TestClock(t *testing.T) {
	c := NewClock()
	before := time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	mono := uint64(ts.Nano())
	after := time.Now()
	if w := c.Wall(mono); w.Before(before.Add(-time.Second)) || w.After(after.Add(time.Second)) {
		t.Fatalf("wall time %v of a monotonic time read between %v and %v", w, before, after)
	}
}

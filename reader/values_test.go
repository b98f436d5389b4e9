package reader

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// rawValue is one capture of a synthetic event.
type rawValue struct {
	a, b, c, d uint64
	failed     bool
	str        string // its string slot's bytes
}

// event builds a ring-buffer record as tracer.c lays it out (tracer.h),
// with one string slot per value, and decodes it.
func event(t *testing.T, vals ...rawValue) *Record {
	t.Helper()
	const header, value, slots, slot = 48, 32, 4, 256
	raw := make([]byte, header+bpf.MaxCaptures*value+slots*slot)
	le := binary.LittleEndian
	raw[42], raw[43] = byte(len(vals)), 1
	for i, v := range vals {
		o := header + i*value
		le.PutUint64(raw[o:], v.a)
		le.PutUint64(raw[o+8:], v.b)
		le.PutUint64(raw[o+16:], v.c)
		le.PutUint64(raw[o+24:], v.d)
		if v.failed {
			raw[44] |= 1 << i
		}
		copy(raw[header+bpf.MaxCaptures*value+i*slot:], v.str)
	}
	var ev Record
	if err := ev.Decode(raw); err != nil {
		t.Fatal(err)
	}
	return &ev
}

// TestStringCaptures: a string capture is exported only when its header is
// sane and its bytes are text; else KEY.unreadable says why, and it is
// counted (headers apart).
func TestStringCaptures(t *testing.T) {
	const ptr = 0xc000012000
	cut := strings.Repeat("a", 127) + "\xc3" // "é" cut after its first byte
	cases := []struct {
		name    string
		v       rawValue
		kind    bpf.CaptureKind
		key     string
		want    string
		counted bool
	}{
		{"text", rawValue{a: 5, b: ptr, str: "hello"}, bpf.CapString, "k", "hello", false},
		{"empty", rawValue{a: 0, b: 0}, bpf.CapString, "k", "", false},
		{"tabs and newlines", rawValue{a: 4, b: ptr, str: "a\tb\n"}, bpf.CapString, "k", "a\tb\n", false},
		{"cut in a rune", rawValue{a: 300, b: ptr, str: cut}, bpf.CapString, "k", strings.Repeat("a", 127) + probes.TruncatedSuffix, false},
		{"invalid UTF-8", rawValue{a: 4, b: ptr, str: "ab\xffc"}, bpf.CapString, "k.unreadable", probes.ReasonNotText, true},
		{"NUL bytes", rawValue{a: 4, b: ptr, str: "A\x00\x00\x00"}, bpf.CapString, "k.unreadable", probes.ReasonNotText, true},
		{"control byte", rawValue{a: 2, b: ptr, str: "\x1b["}, bpf.CapString, "k.unreadable", probes.ReasonNotText, true},
		{"invalid before the cut", rawValue{a: 300, b: ptr, str: "\xff" + strings.Repeat("a", 127)}, bpf.CapString, "k.unreadable", probes.ReasonNotText, true},
		{"huge length", rawValue{a: MaxStringLen + 1, b: ptr, str: "hello"}, bpf.CapString, "k.unreadable", probes.ReasonLength, true},
		{"negative length", rawValue{a: 1 << 63, b: ptr}, bpf.CapString, "k.unreadable", probes.ReasonLength, true},
		{"nil pointer with a length", rawValue{a: 3, b: 0}, bpf.CapString, "k.unreadable", probes.ReasonLength, true},
		{"kernel address", rawValue{a: 3, b: 0xffff888000000000}, bpf.CapString, "k.unreadable", probes.ReasonLength, true},
		{"read failed", rawValue{a: 3, b: ptr, failed: true}, bpf.CapString, "k.unreadable", probes.ReasonReadFailed, true},
		{"bytes, not text", rawValue{a: 4, b: ptr, str: "\x7f\x00\x00\x01"}, bpf.CapPath, "k", "\x7f\x00\x00\x01", false},
		{"bytes with a huge length", rawValue{a: 1 << 40, b: ptr}, bpf.CapPath, "k.unreadable", probes.ReasonLength, true},
		{"header not text", rawValue{a: 3, b: ptr, str: "\x01\x02\x03"}, bpf.CapMapStr, "k.unreadable", probes.ReasonNotText, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ := "string"
			if strings.HasPrefix(c.name, "bytes") {
				typ = "bytes"
			}
			p := &probes.Probe{EntryAttrs: []probes.CapturedAttr{{Key: "k", Type: typ, MaxLen: probes.DefaultMaxString}},
				Recipe: bpf.Recipe{Entry: []bpf.Capture{{Kind: c.kind, Slot: 0}}}}
			var u Unreadable
			got := attributes(p, event(t, c.v), true, nil, nil, &u)
			if len(got) != 1 || string(got[0].Key) != c.key || got[0].Value.AsString() != c.want {
				t.Fatalf("attributes %v, want %s=%q", got, c.key, c.want)
			}
			n := u.Counts()
			want := UnreadableCounts{}
			if c.counted && c.kind == bpf.CapMapStr {
				want.Header = 1
			} else if c.counted {
				want.Capture = 1
			}
			if n != want {
				t.Errorf("counted %+v, want %+v", n, want)
			}
		})
	}
}

// typed is a target whose type names are known (any other address names
// no type) and whose read-only data holds no literal.
type typed map[uint64]string

func (ty typed) TypeName(addr uint64) string               { return ty[addr] }
func (typed) ReadOnlyString(addr, n uint64) (string, bool) { return "", false }

const (
	typErrorString = 0x1000
	typCodeError   = 0x2000
	typString      = 0x3000
	typRuntimeErr  = 0x4000
	typUnknown     = 0x5000
	typGarbage     = 0x6000
)

var names = map[uint64]string{typErrorString: "*errors.errorString", typCodeError: "*main.codeError",
	typString: "string", typRuntimeErr: "runtime.errorString", typUnknown: "",
	typGarbage: "iableNode\x01\x13*parser.Expressions"}

// TestErrorMessages: an error's message is read only for the types whose
// layout is known and only when it passes the checks; otherwise the type
// name stands for it, and it is counted.
func TestErrorMessages(t *testing.T) {
	const ptr = 0xc000012000
	cases := []struct {
		name, typ, msg string
		v              rawValue
		counted        bool
	}{
		{"message", "*errors.errorString", "plain failure", rawValue{a: 1, b: typErrorString, c: 13, d: ptr, str: "plain failure"}, false},
		{"another type", "*main.codeError", "*main.codeError", rawValue{a: 1, b: typCodeError, c: 13, d: ptr, str: "\x07"}, true},
		{"unknown type", "error", "error", rawValue{a: 1, b: typUnknown}, true},
		{"type name not text", "error", "error", rawValue{a: 1, b: typGarbage}, true},
		{"garbage bytes", "*errors.errorString", "*errors.errorString", rawValue{a: 1, b: typErrorString, c: 21, d: ptr, str: "A\x00\x00\x00\x00"}, true},
		{"garbage length", "*errors.errorString", "*errors.errorString", rawValue{a: 1, b: typErrorString, c: 0xc000034000, d: ptr}, true},
		{"read failed", "*errors.errorString", "*errors.errorString", rawValue{a: 1, b: typErrorString, c: 4, d: ptr, failed: true}, true},
	}
	b := typed(names)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &probes.Probe{ErrorCapture: 0, Recipe: bpf.Recipe{Return: []bpf.Capture{{Kind: bpf.CapError}}}}
			var u Unreadable
			e := returnedError(p, event(t, c.v), b, &u)
			if e == nil || e.Type != c.typ || e.Message != c.msg {
				t.Fatalf("error %+v, want %s %q", e, c.typ, c.msg)
			}
			if n := u.Counts(); n != (UnreadableCounts{Error: map[bool]uint64{true: 1}[c.counted]}) {
				t.Errorf("counted %+v", n)
			}
		})
	}
	p := &probes.Probe{ErrorCapture: 0, Recipe: bpf.Recipe{Return: []bpf.Capture{{Kind: bpf.CapError}}}}
	if e := returnedError(p, event(t, rawValue{}), b, nil); e != nil {
		t.Errorf("a nil error decoded as %+v", e)
	}
}

// TestPanicValues: the same rules for a panic's value.
func TestPanicValues(t *testing.T) {
	const ptr = 0xc000012000
	cases := []struct {
		name, want string
		v          rawValue
		counted    bool
	}{
		{"string", "boom", rawValue{a: typString, b: typString, c: 4, d: ptr, str: "boom"}, false},
		{"error", "handler failed", rawValue{a: typErrorString, b: typErrorString, c: 14, d: ptr, str: "handler failed"}, false},
		{"runtime error", "runtime error: index out of range", rawValue{a: typRuntimeErr, b: typRuntimeErr, c: 18, d: ptr, str: "index out of range"}, false},
		{"another type", "*main.codeError", rawValue{a: typCodeError, b: typCodeError}, true},
		{"unknown type", "?", rawValue{a: typUnknown, b: typUnknown}, true},
		{"type name not text", "?", rawValue{a: typGarbage, b: typGarbage}, true},
		{"garbage string", "string", rawValue{a: typString, b: typString, c: 4, d: ptr, str: "\xfe\xff\x00\x01"}, true},
		{"garbage length", "string", rawValue{a: typString, b: typString, c: 1 << 62, d: ptr}, true},
	}
	b := typed(names)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var u Unreadable
			if got := panicValue(event(t, c.v), b, &u); got != c.want {
				t.Fatalf("panic value %q, want %q", got, c.want)
			}
			if n := u.Counts(); n != (UnreadableCounts{Panic: map[bool]uint64{true: 1}[c.counted]}) {
				t.Errorf("counted %+v", n)
			}
		})
	}
}

// TestFailedIntegerReadIsUnreadable: an integer or bool the kernel could not
// read is KEY.unreadable=read_failed and counted, never decoded as the 0 it
// left; one that was read is decoded, sign-extended to its size.
func TestFailedIntegerReadIsUnreadable(t *testing.T) {
	p := &probes.Probe{EntryAttrs: []probes.CapturedAttr{{Key: "done", Type: "int", Size: 4}, {Key: "n", Type: "int", Size: 4}, {Key: "ok", Type: "bool"}}}
	p.Recipe.Entry = make([]bpf.Capture, 3)
	ev := &Record{NValues: 3}
	ev.Values[0] = Value{ReadFailed: true}
	ev.Values[1] = Value{A: 0xffffffff}
	ev.Values[2] = Value{A: 1, ReadFailed: true}
	var u Unreadable
	got := map[string]any{}
	for _, a := range attributes(p, ev, true, nil, nil, &u) {
		got[string(a.Key)] = a.Value.AsInterface()
	}
	want := map[string]any{"done.unreadable": probes.ReasonReadFailed, "n": int64(-1), "ok.unreadable": probes.ReasonReadFailed}
	if len(got) != len(want) {
		t.Fatalf("attributes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if n := u.Counts().Capture; n != 2 {
		t.Errorf("%d unreadable captures counted, want 2", n)
	}
}

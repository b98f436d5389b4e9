package probes

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
)

// TruncatedSuffix ends a captured string that was longer than its bound.
const TruncatedSuffix = "…"

// Attributes appends to dst the attributes decoded from ev's captures at
// entry (when entry) or at return. b, when not nil, supplies strings the
// kernel could not read because their page was not resident yet: literals
// in the binary's read-only data.
func (p *Probe) Attributes(ev *bpf.Event, entry bool, dst []attribute.KeyValue, b *Binary) []attribute.KeyValue {
	attrs := p.ReturnAttrs
	if entry {
		attrs = p.EntryAttrs
	}
	caps := p.Recipe.Return
	if entry {
		caps = p.Recipe.Entry
	}
	for i, a := range attrs {
		if i >= ev.NValues {
			break
		}
		v := ev.Values[i]
		if v.Nil {
			continue // a field behind a nil pointer: there is nothing to say
		}
		if v.ReadFailed && a.Type != "string" {
			// The kernel could not read the integer: its 0 is no value.
			dst = append(dst, attribute.Bool(a.Key+".unreadable", true))
			continue
		}
		switch a.Type {
		case "int":
			dst = append(dst, attribute.Int64(a.Key, signExtend(v.A, a.Size)))
		case "uint":
			dst = append(dst, attribute.Int64(a.Key, int64(zeroExtend(v.A, a.Size))))
		case "bool":
			dst = append(dst, attribute.Bool(a.Key, v.A&0xff != 0))
		case "string":
			n := min(v.A, uint64(a.MaxLen))
			var s string
			if v.ReadFailed {
				// v.B is the string's address for every string capture.
				var ok bool
				if s, ok = "", b != nil; ok {
					s, ok = b.ReadOnlyString(v.B, n)
				}
				if !ok {
					dst = append(dst, attribute.String(a.Key, ""), attribute.Bool(a.Key+".unreadable", true))
					continue
				}
			} else {
				s = string(ev.String(caps[i].Slot, n))
			}
			if v.A > n {
				s = strings.ToValidUTF8(s, "") + TruncatedSuffix
			}
			dst = append(dst, attribute.String(a.Key, s))
		}
	}
	return dst
}

func signExtend(v uint64, size int) int64 {
	switch size {
	case 1:
		return int64(int8(v))
	case 2:
		return int64(int16(v))
	case 4:
		return int64(int32(v))
	}
	return int64(v)
}

func zeroExtend(v uint64, size int) uint64 {
	switch size {
	case 1:
		return v & 0xff
	case 2:
		return v & 0xffff
	case 4:
		return v & 0xffffffff
	}
	return v
}

// messageTypes are the error types whose first field is their message, so
// the BPF side's read of it can be trusted.
var messageTypes = map[string]bool{
	"*errors.errorString": true,
	"*fmt.wrapError":      true,
	"*fmt.wrapErrors":     true,
	"proto.RedisError":    true, // go-redis: a string type
}

// Error decodes the returned error from a return event, nil when the call
// returned a nil error. The type is the dynamic type's name; the message is
// read only for the common types, else it is the type name.
func (p *Probe) Error(ev *bpf.Event, b *Binary) *channel.Error {
	i := p.ErrorCapture
	if i < 0 || i >= ev.NValues {
		return nil
	}
	v := ev.Values[i]
	if v.A == 0 {
		return nil
	}
	e := &channel.Error{Type: b.TypeName(v.B), Message: ""}
	if e.Type == "" {
		e.Type = "error"
	}
	e.Message = e.Type
	if !messageTypes[e.Type] {
		return e
	}
	n := min(v.C, bpf.StringSlotSize)
	if !v.ReadFailed {
		e.Message = string(ev.String(p.Recipe.Return[i].Slot, n))
	} else if s, ok := b.ReadOnlyString(v.D, n); ok {
		e.Message = s // a literal whose page the process had not touched yet
	} else {
		return e
	}
	if v.C > n {
		e.Message = strings.ToValidUTF8(e.Message, "") + TruncatedSuffix
	}
	return e
}

// PanicValue renders the value a panic event captured: the string for a
// string panic, the message for the common error types, else the type name.
func PanicValue(ev *bpf.Event, b *Binary) string {
	if ev.NValues < 1 {
		return "?"
	}
	v := ev.Values[0]
	typ := b.TypeName(v.B)
	if typ == "" {
		typ = "?"
	}
	if !(typ == "string" || messageTypes[typ] || typ == "runtime.errorString" || typ == "runtime.plainError") {
		return typ
	}
	n := min(v.C, bpf.StringSlotSize)
	s := string(ev.String(0, n))
	if v.ReadFailed {
		var ok bool
		if s, ok = b.ReadOnlyString(v.D, n); !ok {
			return typ
		}
	}
	s = strings.ToValidUTF8(s, "")
	if v.C > n {
		s += TruncatedSuffix
	}
	if typ == "runtime.errorString" {
		s = "runtime error: " + s // as runtime.Error's message reads
	}
	return s
}

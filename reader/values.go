package reader

import (
	"sync/atomic"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

// MaxStringLen bounds the length of a string header read from the target:
// a longer one is taken as the sign of a wrong offset or type, not as a
// 1 GiB string.
const MaxStringLen = 1 << 30

// Target is what decoding reads from the traced executable itself rather
// than from the record: the names of the types an error or a panic value
// has, and string literals in read-only data that the kernel could not
// read because their page was not resident yet. *probes.Binary is one.
type Target interface {
	TypeName(addr uint64) string
	ReadOnlyString(addr, n uint64) (string, bool)
}

// Unreadable counts the values read from the target that failed a sanity
// check and were replaced by KEY.unreadable or a typed placeholder, by what
// they were. A wrong offset or a spec wrong about an argument's type shows
// up here rather than as plausible-looking bytes. Safe for concurrent use.
type Unreadable struct {
	Capture atomic.Uint64 // captures of custom and built-in probes (strings, and words not read)
	Header  atomic.Uint64 // HTTP header values the built-in probes read
	Error   atomic.Uint64 // returned errors whose message could not be read
	Panic   atomic.Uint64 // panic values whose message could not be read
}

// UnreadableCounts is a snapshot of Unreadable.
type UnreadableCounts struct{ Capture, Header, Error, Panic uint64 }

// Counts returns the counts so far; a nil u counts nothing.
func (u *Unreadable) Counts() UnreadableCounts {
	if u == nil {
		return UnreadableCounts{}
	}
	return UnreadableCounts{u.Capture.Load(), u.Header.Load(), u.Error.Load(), u.Panic.Load()}
}

func (u *Unreadable) count(c *atomic.Uint64) {
	if u != nil {
		c.Add(1)
	}
}

// isText reports whether s is text: valid UTF-8 with no control character
// but tab, newline and carriage return. Memory read at a wrong offset is
// rarely both (pointers and small integers are full of NULs and of bytes
// that start no rune).
func isText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

// saneHeader checks a string header (pointer, length) read from the target.
func saneHeader(ptr, n uint64) bool {
	return n <= MaxStringLen && (n == 0 || ptr != 0 && ptr < maxUserAddr && ptr+n <= maxUserAddr)
}

// text finishes a string read from the target: full is its length in the
// program, s the bytes read (at most the bound). A string cut at the bound
// may end in the middle of a rune: that rune's bytes are dropped before the
// check, and the truncation mark is added after. The reason is "" for text.
func text(s string, full uint64) (string, string) {
	cut := full > uint64(len(s))
	if cut {
		i := len(s) - 1
		for i > 0 && i > len(s)-utf8.UTFMax && !utf8.RuneStart(s[i]) {
			i--
		}
		if i >= 0 && !utf8.FullRuneInString(s[i:]) {
			s = s[:i]
		}
	}
	if !isText(s) {
		return "", probes.ReasonNotText
	}
	if cut {
		s += probes.TruncatedSuffix
	}
	return s, ""
}

// readString reads a string value a capture holds: its bytes from the
// record (or, for a literal the kernel could not read, from the binary),
// checked. ptr and n are the string header, slot its string slot, max the
// bound; wantText asks for text (see text), else any bytes do.
func readString(rec *Record, v Value, ptr, n uint64, slot uint8, max int, t Target, wantText bool) (string, string) {
	if !saneHeader(ptr, n) {
		return "", probes.ReasonLength
	}
	m := min(n, uint64(max), bpf.StringSlotSize)
	var s string
	if v.ReadFailed {
		var ok bool
		if t != nil {
			s, ok = t.ReadOnlyString(ptr, m)
		}
		if !ok {
			return "", probes.ReasonReadFailed
		}
	} else {
		s = string(rec.String(slot, m))
	}
	if !wantText {
		if n > uint64(len(s)) {
			s += probes.TruncatedSuffix
		}
		return s, "" // bytes, as they are
	}
	return text(s, n)
}

// attributes appends to dst the attributes decoded from rec's captures,
// probe p's at entry (when entry) or at return. t, when not nil, supplies
// strings the kernel could not read because their page was not resident
// yet: literals in the binary's read-only data. A string that cannot be
// read or trusted becomes KEY.unreadable, with the reason, counted in u
// (which may be nil).
func attributes(p *probes.Probe, rec *Record, entry bool, dst []attribute.KeyValue, t Target, u *Unreadable) []attribute.KeyValue {
	attrs := p.ReturnAttrs
	if entry {
		attrs = p.EntryAttrs
	}
	caps := p.Recipe.Return
	if entry {
		caps = p.Recipe.Entry
	}
	for i, a := range attrs {
		if i >= rec.NValues || i >= len(caps) {
			break
		}
		v := rec.Values[i]
		if v.Nil {
			continue // a field behind a nil pointer: there is nothing to say
		}
		if v.ReadFailed && (a.Type == "int" || a.Type == "uint" || a.Type == "bool") {
			// The kernel could not read the word: its 0 is no value.
			dst = append(dst, attribute.String(a.Key+probes.UnreadableSuffix, probes.ReasonReadFailed))
			u.count(&u.Capture)
			continue
		}
		switch a.Type {
		case "int":
			dst = append(dst, attribute.Int64(a.Key, signExtend(v.A, a.Size)))
		case "uint":
			dst = append(dst, attribute.Int64(a.Key, int64(zeroExtend(v.A, a.Size))))
		case "bool":
			dst = append(dst, attribute.Bool(a.Key, v.A&0xff != 0))
		case "string", "bytes":
			// Every string capture holds its length in A and its address
			// in B.
			s, why := readString(rec, v, v.B, v.A, caps[i].Slot, a.MaxLen, t, a.Type == "string")
			if why != "" {
				dst = append(dst, attribute.String(a.Key+probes.UnreadableSuffix, why))
				if caps[i].Kind == bpf.CapMapStr || caps[i].Kind == bpf.CapHdrs {
					u.count(&u.Header)
				} else {
					u.count(&u.Capture)
				}
				continue
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

// typeName is the name of the type at addr in the target, "" when there
// is no target to ask.
func typeName(t Target, addr uint64) string {
	if t == nil {
		return ""
	}
	return t.TypeName(addr)
}

// messageTypes are the error types whose first field is their message, so
// the BPF side's read of it can be trusted.
var messageTypes = map[string]bool{
	"*errors.errorString": true,
	"*fmt.wrapError":      true,
	"*fmt.wrapErrors":     true,
	"proto.RedisError":    true, // go-redis: a string type
}

// returnedError decodes the error probe p's call returned from its return
// record, nil when the call returned a nil error. The type is the dynamic
// type's name ("error" when it cannot be read); the message is read only
// for the common types. Where the message cannot be read — another type,
// or a read that fails a check — the type name stands for it, and u (which
// may be nil) counts it.
func returnedError(p *probes.Probe, rec *Record, t Target, u *Unreadable) *channel.Error {
	i := p.ErrorCapture
	if i < 0 || i >= rec.NValues || i >= len(p.Recipe.Return) {
		return nil
	}
	v := rec.Values[i]
	if v.A == 0 {
		return nil
	}
	e := &channel.Error{Type: typeName(t, v.B), Message: ""}
	if e.Type == "" || !isText(e.Type) {
		e.Type = "error" // a name read at a wrong address is no name
	}
	e.Message = e.Type
	if !messageTypes[e.Type] {
		u.count(&u.Error)
		return e
	}
	s, why := readString(rec, v, v.D, v.C, p.Recipe.Return[i].Slot, bpf.StringSlotSize, t, true)
	if why != "" {
		u.count(&u.Error)
		return e
	}
	e.Message = s
	return e
}

// panicValue renders the value a panic record captured: the string for a
// string panic, the message for the common error types, else — or when the
// message cannot be read or trusted — the type name ("?" when even that
// cannot be read), counted in u (which may be nil).
func panicValue(rec *Record, t Target, u *Unreadable) string {
	if rec.NValues < 1 {
		u.count(&u.Panic)
		return "?"
	}
	v := rec.Values[0]
	typ := typeName(t, v.B)
	if typ == "" || !isText(typ) {
		typ = "?"
	}
	if !(typ == "string" || messageTypes[typ] || typ == "runtime.errorString" || typ == "runtime.plainError") {
		u.count(&u.Panic)
		return typ
	}
	s, why := readString(rec, v, v.D, v.C, 0, bpf.StringSlotSize, t, true)
	if why != "" {
		u.count(&u.Panic)
		return typ
	}
	if typ == "runtime.errorString" {
		s = "runtime error: " + s // as runtime.Error's message reads
	}
	return s
}

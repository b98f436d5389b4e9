package semconv

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tcagent/tcagent/probes"
)

// errBSON: the bytes are not a BSON document.
var errBSON = errors.New("malformed BSON")

// maxBSONDepth bounds nesting, so that no input recurses without end.
const maxBSONDepth = 64

// MongoQueryText renders a MongoDB command document (BSON) as relaxed
// Extended JSON for db.query.text. Sanitized (full false), every value is
// "?" (but the command's own when keepCommand says it is a collection's
// name, an identifier), so that no value the program sent (a password, a
// card number) leaves the process, while the command's structure (field
// names, operators, nesting) stays.
// The driver's bookkeeping fields (lsid, txnNumber, and the $-prefixed
// $db, $clusterTime, $readPreference) are left out. doc may be the
// document's first bytes only (its declared length says more): what is
// whole is rendered, then "…", never a partial value; err says when the
// bytes are not BSON.
func MongoQueryText(doc []byte, full, keepCommand bool) (text string, err error) {
	w := bsonWriter{full: full, keepCommand: keepCommand}
	truncated, err := w.doc(doc, false, 0)
	if err != nil {
		return "", err
	}
	if truncated {
		w.out.WriteString(probes.TruncatedSuffix)
	}
	return w.out.String(), nil
}

// MongoCommandOf returns a command document's first element: the
// command's name, and its value when a string (for most commands, the
// collection). ok is false when not even the first element is whole.
func MongoCommandOf(doc []byte) (name, value string, ok bool) {
	if len(doc) < 5 {
		return "", "", false
	}
	b := doc[4:]
	end := strings.IndexByte(string(b[1:]), 0)
	if end < 0 || b[0] == 0 {
		return "", "", false
	}
	name = string(b[1 : 1+end])
	v := b[1+end+1:]
	if b[0] == 0x02 {
		if s, n, err := bsonString(v); err == nil && n > 0 {
			value = s
		}
	}
	return name, value, true
}

// MongoLookupString returns the string value of a top-level key of a
// command document, false when the key is not there whole or holds no
// string.
func MongoLookupString(doc []byte, key string) (string, bool) {
	if len(doc) < 5 {
		return "", false
	}
	n := int(int32(binary.LittleEndian.Uint32(doc)))
	body := doc[4:min(max(n-1, 4), len(doc))]
	for i := 0; i < len(body); {
		t := body[i]
		keyEnd := strings.IndexByte(string(body[i+1:]), 0)
		if keyEnd < 0 {
			return "", false
		}
		v := body[i+1+keyEnd+1:]
		size, whole := bsonSize(t, v)
		if size < 0 || !whole {
			return "", false
		}
		if t == 0x02 && string(body[i+1:i+1+keyEnd]) == key {
			s, _, err := bsonString(v)
			return s, err == nil
		}
		i += 1 + keyEnd + 1 + size
	}
	return "", false
}

type bsonWriter struct {
	out         strings.Builder
	full        bool
	keepCommand bool
}

// doc writes the document (or array) at the start of b, which may be cut
// short: truncated says the bytes ended before the document did, after
// everything whole was written.
func (w *bsonWriter) doc(b []byte, array bool, depth int) (truncated bool, err error) {
	if depth > maxBSONDepth {
		return false, errBSON
	}
	open, closing := byte('{'), byte('}')
	if array {
		open, closing = '[', ']'
	}
	if len(b) < 4 {
		w.out.WriteByte(open)
		return true, nil
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	if n < 5 {
		return false, errBSON
	}
	cut := n > len(b)
	var body []byte
	if cut {
		body = b[4:]
	} else {
		if b[n-1] != 0 {
			return false, errBSON
		}
		body = b[4 : n-1]
	}
	w.out.WriteByte(open)
	first := true
	for i := 0; i < len(body); {
		t := body[i]
		keyEnd := strings.IndexByte(string(body[i+1:]), 0)
		if keyEnd < 0 {
			if cut {
				return true, nil
			}
			return false, errBSON
		}
		key := string(body[i+1 : i+1+keyEnd])
		v := body[i+1+keyEnd+1:]
		size, whole := bsonSize(t, v)
		if size < 0 {
			return false, errBSON
		}
		if !whole && !cut {
			return false, errBSON
		}
		if !whole && t != 0x03 && t != 0x04 {
			return true, nil // never a partial value
		}
		skip := depth == 0 && i > 0 && (key == "lsid" || key == "txnNumber" || strings.HasPrefix(key, "$"))
		if !skip {
			if !first {
				w.out.WriteString(", ")
			}
			if !array {
				w.out.WriteString(jsonQuote(key))
				w.out.WriteString(": ")
			}
			// The command's own value, first in the document, is kept
			// when it names the collection.
			keep := depth == 0 && i == 0 && t == 0x02 && w.keepCommand
			truncated, err := w.value(t, v[:min(size, len(v))], depth, keep)
			if err != nil || truncated {
				return truncated, err
			}
			first = false
		}
		if !whole {
			return true, nil
		}
		i += 1 + keyEnd + 1 + size
	}
	if cut {
		return true, nil
	}
	w.out.WriteByte(closing)
	return false, nil
}

// bsonSize returns the size of a value of type t at the start of v, -1
// when it cannot be BSON; whole is false when v holds less.
func bsonSize(t byte, v []byte) (size int, whole bool) {
	fixed := func(n int) (int, bool) { return n, len(v) >= n }
	prefixed := func(extra int) (int, bool) {
		if len(v) < 4 {
			return 0, false
		}
		n := int(int32(binary.LittleEndian.Uint32(v)))
		if n < 0 || n > math.MaxInt32-extra {
			return -1, false
		}
		return 4 + n + extra, len(v) >= 4+n+extra
	}
	switch t {
	case 0x06, 0x0A, 0xFF, 0x7F: // undefined, null, min and max key
		return fixed(0)
	case 0x08: // bool
		return fixed(1)
	case 0x10: // int32
		return fixed(4)
	case 0x01, 0x09, 0x11, 0x12: // double, date, timestamp, int64
		return fixed(8)
	case 0x07: // ObjectId
		return fixed(12)
	case 0x13: // decimal128
		return fixed(16)
	case 0x02, 0x0D, 0x0E: // string, code, symbol
		return prefixed(0)
	case 0x03, 0x04, 0x0F: // document, array, code with scope: length included
		n, whole := prefixed(0)
		if n >= 4 {
			n -= 4
			whole = len(v) >= n
		}
		return n, whole
	case 0x05: // binary: length, subtype, bytes
		return prefixed(1)
	case 0x0B: // regex: two C strings
		a := strings.IndexByte(string(v), 0)
		if a < 0 {
			return 0, false
		}
		c := strings.IndexByte(string(v[a+1:]), 0)
		if c < 0 {
			return 0, false
		}
		return a + 1 + c + 1, true
	case 0x0C: // DBPointer: string, ObjectId
		n, whole := prefixed(12)
		return n, whole
	}
	return -1, false
}

// value writes a value of type t, whole in v but for a document or array
// (which may be cut short).
func (w *bsonWriter) value(t byte, v []byte, depth int, keep bool) (truncated bool, err error) {
	if t == 0x03 || t == 0x04 {
		return w.doc(v, t == 0x04, depth+1)
	}
	if !w.full && !keep {
		w.out.WriteString(`"?"`)
		return false, nil
	}
	s, err := bsonScalar(t, v)
	w.out.WriteString(s)
	return false, err
}

// bsonScalar renders a whole scalar value as relaxed Extended JSON; a type
// it does not render exactly (decimal128, code with scope, DBPointer) is
// "?".
func bsonScalar(t byte, v []byte) (string, error) {
	le := binary.LittleEndian
	switch t {
	case 0x01:
		f := math.Float64frombits(le.Uint64(v))
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return `{"$numberDouble": "` + strconv.FormatFloat(f, 'g', -1, 64) + `"}`, nil
		}
		s := strconv.FormatFloat(f, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		return s, nil
	case 0x02, 0x0D, 0x0E:
		s, _, err := bsonString(v)
		if err != nil {
			return "", err
		}
		switch t {
		case 0x0D:
			return `{"$code": ` + jsonQuote(s) + `}`, nil
		case 0x0E:
			return `{"$symbol": ` + jsonQuote(s) + `}`, nil
		}
		return jsonQuote(s), nil
	case 0x05:
		return `{"$binary": {"base64": "` + base64.StdEncoding.EncodeToString(v[5:]) + `", "subType": "` + hex.EncodeToString(v[4:5]) + `"}}`, nil
	case 0x06:
		return `{"$undefined": true}`, nil
	case 0x07:
		return `{"$oid": "` + hex.EncodeToString(v) + `"}`, nil
	case 0x08:
		switch v[0] {
		case 0:
			return "false", nil
		case 1:
			return "true", nil
		}
		return "", errBSON
	case 0x09:
		return `{"$date": {"$numberLong": "` + strconv.FormatInt(int64(le.Uint64(v)), 10) + `"}}`, nil
	case 0x0A:
		return "null", nil
	case 0x0B:
		a := strings.IndexByte(string(v), 0)
		return `{"$regularExpression": {"pattern": ` + jsonQuote(string(v[:a])) + `, "options": ` + jsonQuote(string(v[a+1:len(v)-1])) + `}}`, nil
	case 0x10:
		return strconv.FormatInt(int64(int32(le.Uint32(v))), 10), nil
	case 0x11:
		return `{"$timestamp": {"t": ` + strconv.FormatUint(uint64(le.Uint32(v[4:])), 10) + `, "i": ` + strconv.FormatUint(uint64(le.Uint32(v)), 10) + `}}`, nil
	case 0x12:
		return strconv.FormatInt(int64(le.Uint64(v)), 10), nil
	case 0xFF:
		return `{"$minKey": 1}`, nil
	case 0x7F:
		return `{"$maxKey": 1}`, nil
	}
	return `"?"`, nil
}

// bsonString reads a whole BSON string (length, bytes, NUL) at the start
// of v, and its size.
func bsonString(v []byte) (string, int, error) {
	if len(v) < 4 {
		return "", 0, errBSON
	}
	n := int(int32(binary.LittleEndian.Uint32(v)))
	if n < 1 || 4+n > len(v) || v[4+n-1] != 0 {
		return "", 0, errBSON
	}
	return string(v[4 : 4+n-1]), 4 + n, nil
}

// jsonQuote quotes s as a JSON string; bytes that are not UTF-8 become
// U+FFFD.
func jsonQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteString(hex.EncodeToString([]byte{byte(r)}))
		default:
			b.WriteRune(r) // utf8.RuneError for an invalid byte
		}
	}
	b.WriteByte('"')
	return b.String()
}

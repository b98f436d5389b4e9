package semconv

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tcagent/tcagent/probes"
)

// el is one BSON element for the tests' documents.
type el struct {
	t   byte
	key string
	v   []byte
}

func bdoc(els ...el) []byte {
	var body []byte
	for _, e := range els {
		body = append(body, e.t)
		body = append(body, e.key...)
		body = append(body, 0)
		body = append(body, e.v...)
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(4+len(body)+1))
	return append(append(out, body...), 0)
}

func bstr(key, s string) el {
	v := binary.LittleEndian.AppendUint32(nil, uint32(len(s)+1))
	return el{0x02, key, append(append(v, s...), 0)}
}

func bint32(key string, n int32) el {
	return el{0x10, key, binary.LittleEndian.AppendUint32(nil, uint32(n))}
}

func bint64(key string, n int64) el {
	return el{0x12, key, binary.LittleEndian.AppendUint64(nil, uint64(n))}
}

func bdouble(key string, f float64) el {
	return el{0x01, key, binary.LittleEndian.AppendUint64(nil, math.Float64bits(f))}
}

func bbool(key string, b bool) el {
	if b {
		return el{0x08, key, []byte{1}}
	}
	return el{0x08, key, []byte{0}}
}

func bsub(key string, d []byte) el { return el{0x03, key, d} }

func barr(key string, items ...el) el {
	for i := range items {
		items[i].key = string(rune('0' + i))
	}
	return el{0x04, key, bdoc(items...)}
}

// find is a find command as the driver builds it: the command, the
// program's filter, then the driver's session and database.
func find() []byte {
	return bdoc(bstr("find", "orders"),
		bsub("filter", bdoc(bstr("card", "4111-1111"), bsub("qty", bdoc(bint32("$gt", 5))), bsub("tags", bdoc(barr("$in", bstr("", "a"), bstr("", "b")))))),
		bint64("limit", 10), bdouble("ratio", 0.5), bbool("singleBatch", true),
		bsub("lsid", bdoc(el{0x05, "id", append(binary.LittleEndian.AppendUint32(nil, 2), 4, 0xab, 0xcd)})),
		bstr("$db", "shop"))
}

func TestMongoQueryTextSanitized(t *testing.T) {
	got, err := MongoQueryText(find(), false, true)
	want := `{"find": "orders", "filter": {"card": "?", "qty": {"$gt": "?"}, "tags": {"$in": ["?", "?"]}}, "limit": "?", "ratio": "?", "singleBatch": "?"}`
	if err != nil || got != want {
		t.Errorf("sanitized:\n %s, %v, want\n %s", got, err, want)
	}
	// A command whose value is no collection's name keeps no value.
	got, _ = MongoQueryText(bdoc(bstr("createUser", "alice"), bstr("pwd", "x")), false, false)
	if got != `{"createUser": "?", "pwd": "?"}` {
		t.Errorf("createUser: %s", got)
	}
}

func TestMongoQueryTextFull(t *testing.T) {
	got, err := MongoQueryText(find(), true, true)
	want := `{"find": "orders", "filter": {"card": "4111-1111", "qty": {"$gt": 5}, "tags": {"$in": ["a", "b"]}}, "limit": 10, "ratio": 0.5, "singleBatch": true}`
	if err != nil || got != want {
		t.Errorf("full:\n %s, %v, want\n %s", got, err, want)
	}
	oid := el{0x07, "_id", []byte{0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}
	got, _ = MongoQueryText(bdoc(bstr("x", "a\"b\x01"), oid, el{0x0A, "n", nil}, bdouble("d", 2), el{0x13, "dec", make([]byte, 16)}), true, false)
	want = `{"x": "a\"b\u0001", "_id": {"$oid": "650102030405060708090a0b"}, "n": null, "d": 2.0, "dec": "?"}`
	if got != want {
		t.Errorf("types:\n %s, want\n %s", got, want)
	}
}

// TestMongoQueryTextTruncated: a document cut anywhere renders what is
// whole, marked, never a partial value, and never fails.
func TestMongoQueryTextTruncated(t *testing.T) {
	doc := find()
	whole, _ := MongoQueryText(doc, true, true)
	for n := 0; n < len(doc); n++ {
		got, err := MongoQueryText(doc[:n], true, true)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !strings.HasSuffix(got, probes.TruncatedSuffix) {
			t.Fatalf("%d bytes: %q is not marked", n, got)
		}
		if prefix := strings.TrimSuffix(got, probes.TruncatedSuffix); !strings.HasPrefix(whole, prefix) {
			t.Fatalf("%d bytes: %q is not a prefix of the whole %q", n, got, whole)
		}
	}
	// At 40 bytes, the filter's card (a string) is cut: neither it nor
	// its key is written.
	if got, _ := MongoQueryText(doc[:40], true, true); got != `{"find": "orders", "filter": {`+probes.TruncatedSuffix {
		t.Errorf("cut in a string: %q", got)
	}
}

func TestMongoQueryTextMalformed(t *testing.T) {
	good := bdoc(bstr("find", "orders"))
	for name, b := range map[string][]byte{
		"length too small":  {4, 0, 0, 0, 0},
		"no final NUL":      append(append([]byte{}, good[:len(good)-1]...), 1),
		"unknown type":      bdoc(el{0x42, "x", nil}),
		"string length":     bdoc(el{0x02, "s", []byte{0xff, 0xff, 0xff, 0xff, 'a', 0}}),
		"bool not 0 or 1":   bdoc(el{0x08, "b", []byte{7}}),
		"element past end":  bdoc(el{0x12, "n", []byte{1, 2}}),
		"string unfinished": bdoc(el{0x02, "s", []byte{3, 0, 0, 0, 'a', 'b', 'c'}}),
	} {
		if got, err := MongoQueryText(b, true, true); err == nil {
			t.Errorf("%s: %q, no error", name, got)
		}
	}
}

func TestMongoLookupString(t *testing.T) {
	doc := bdoc(bint64("getMore", 42), bstr("collection", "orders"), bint32("n", 1))
	if s, ok := MongoLookupString(doc, "collection"); s != "orders" || !ok {
		t.Errorf("collection: %q %v", s, ok)
	}
	if _, ok := MongoLookupString(doc, "n"); ok {
		t.Error("an int32 is a string")
	}
	if _, ok := MongoLookupString(doc[:20], "collection"); ok {
		t.Error("a cut string is a string")
	}
}

func TestMongoCommandOf(t *testing.T) {
	if n, v, ok := MongoCommandOf(find()); n != "find" || v != "orders" || !ok {
		t.Errorf("find: %q %q %v", n, v, ok)
	}
	if n, v, ok := MongoCommandOf(bdoc(bint32("ping", 1))); n != "ping" || v != "" || !ok {
		t.Errorf("ping: %q %q %v", n, v, ok)
	}
	// The collection's name cut short is no name.
	if n, v, ok := MongoCommandOf(find()[:14]); n != "find" || v != "" || !ok {
		t.Errorf("cut: %q %q %v", n, v, ok)
	}
	if _, _, ok := MongoCommandOf(find()[:7]); ok {
		t.Error("a cut name is a name")
	}
}

// FuzzMongoQueryText: any bytes, never a panic; the text is UTF-8, and a
// sanitized one holds no string of the input but keys and the command's.
func FuzzMongoQueryText(f *testing.F) {
	f.Add(find())
	f.Add(find()[:50])
	f.Add(bdoc(bstr("insert", "orders"), barr("documents", bsub("", bdoc(bstr("name", "x"))))))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, full := range []bool{false, true} {
			text, err := MongoQueryText(b, full, true)
			if err == nil && !utf8.ValidString(text) {
				t.Errorf("not UTF-8: %q", text)
			}
		}
		MongoCommandOf(b)
		MongoLookupString(b, "collection")
	})
}

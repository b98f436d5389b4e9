// Package exporter sends finished spans out of the agent: JSON lines, a
// terminal tree per finished trace, or OTLP.
package exporter

import (
	"context"
	"encoding/hex"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// JSONL writes one JSON object per ended span per line, in the format of
// the user-facing contract (design.md section 3). It encodes by hand into a
// reused buffer: reflection over each span's maps cost the agent more CPU
// than the rest of its pipeline.
type JSONL struct {
	mu        sync.Mutex
	w         io.Writer
	buf       []byte
	order     []int                         // appendAttrs' scratch
	resources map[*resource.Resource][]byte // each resource encoded once
}

// NewJSONL returns an exporter writing to w.
func NewJSONL(w io.Writer) *JSONL {
	return &JSONL{w: w, resources: map[*resource.Resource][]byte{}}
}

// Span is one line of JSONL output.
type Span struct {
	Name         string         `json:"name"`
	TraceID      string         `json:"trace_id"`
	SpanID       string         `json:"span_id"`
	ParentSpanID string         `json:"parent_span_id"`
	Kind         string         `json:"kind"`
	Start        int64          `json:"start_time_unix_nano"`
	End          int64          `json:"end_time_unix_nano"`
	Status       Status         `json:"status"`
	Attributes   map[string]any `json:"attributes"`
	Events       []Event        `json:"events"`
	Resource     map[string]any `json:"resource"`
}

// Status is a span's status in JSONL.
type Status struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Event is a span event in JSONL.
type Event struct {
	Name       string         `json:"name"`
	Time       int64          `json:"time_unix_nano"`
	Attributes map[string]any `json:"attributes"`
}

// ExportSpans implements sdktrace.SpanExporter.
func (j *JSONL) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	b := j.buf[:0]
	for _, s := range spans {
		b = j.appendSpan(b, s)
	}
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// appendSpan appends one line: the fields in the contract's order, map keys
// sorted.
func (j *JSONL) appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = append(b, `{"name":`...)
	b = appendJSONString(b, s.Name())
	b = append(b, `,"trace_id":"`...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, `","span_id":"`...)
	b = hex.AppendEncode(b, sid[:])
	b = append(b, `","parent_span_id":"`...)
	if p := s.Parent(); p.IsValid() {
		psid := p.SpanID()
		b = hex.AppendEncode(b, psid[:])
	}
	b = append(b, `","kind":"`...)
	b = append(b, kindName(s.SpanKind())...)
	b = append(b, `","start_time_unix_nano":`...)
	b = strconv.AppendInt(b, s.StartTime().UnixNano(), 10)
	b = append(b, `,"end_time_unix_nano":`...)
	b = strconv.AppendInt(b, s.EndTime().UnixNano(), 10)
	b = append(b, `,"status":{"code":"`...)
	b = append(b, codeName(s.Status().Code)...)
	b = append(b, `","message":`...)
	b = appendJSONString(b, s.Status().Description)
	b = append(b, `},"attributes":`...)
	b = j.appendAttrs(b, s.Attributes())
	b = append(b, `,"events":[`...)
	for i, e := range s.Events() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, e.Name)
		b = append(b, `,"time_unix_nano":`...)
		b = strconv.AppendInt(b, e.Time.UnixNano(), 10)
		b = append(b, `,"attributes":`...)
		b = j.appendAttrs(b, e.Attributes)
		b = append(b, '}')
	}
	b = append(b, `],"resource":`...)
	if r := s.Resource(); r != nil {
		enc, ok := j.resources[r]
		if !ok {
			enc = j.appendAttrs(nil, r.Attributes())
			j.resources[r] = enc
		}
		b = append(b, enc...)
	} else {
		b = append(b, "{}"...)
	}
	return append(b, "}\n"...)
}

// appendAttrs appends attrs as a JSON object, keys sorted (as
// encoding/json orders maps), the last value of a repeated key winning. It
// sorts the attributes' indices, not the attributes: moving a few bytes
// per swap instead of a whole KeyValue.
func (j *JSONL) appendAttrs(b []byte, attrs []attribute.KeyValue) []byte {
	idx := j.order[:0]
	for i := range attrs {
		idx = append(idx, i)
	}
	key := func(i int) string { return string(attrs[i].Key) }
	if len(idx) <= 32 {
		for i := 1; i < len(idx); i++ { // insertion sort: stable
			for k := i; k > 0 && key(idx[k]) < key(idx[k-1]); k-- {
				idx[k], idx[k-1] = idx[k-1], idx[k]
			}
		}
	} else {
		slices.SortStableFunc(idx, func(x, y int) int { return strings.Compare(key(x), key(y)) })
	}
	j.order = idx
	b = append(b, '{')
	first := true
	for n, i := range idx {
		if n+1 < len(idx) && key(idx[n+1]) == key(i) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, key(i))
		b = append(b, ':')
		b = appendValue(b, attrs[i].Value)
	}
	return append(b, '}')
}

func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return strconv.AppendBool(b, v.AsBool())
	case attribute.INT64:
		return strconv.AppendInt(b, v.AsInt64(), 10)
	case attribute.FLOAT64:
		return appendFloat(b, v.AsFloat64())
	case attribute.STRING:
		return appendJSONString(b, v.AsString())
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		b = append(b, '[')
		switch v.Type() {
		case attribute.BOOLSLICE:
			for i, x := range v.AsBoolSlice() {
				b = appendSep(b, i)
				b = strconv.AppendBool(b, x)
			}
		case attribute.INT64SLICE:
			for i, x := range v.AsInt64Slice() {
				b = appendSep(b, i)
				b = strconv.AppendInt(b, x, 10)
			}
		case attribute.FLOAT64SLICE:
			for i, x := range v.AsFloat64Slice() {
				b = appendSep(b, i)
				b = appendFloat(b, x)
			}
		case attribute.STRINGSLICE:
			for i, x := range v.AsStringSlice() {
				b = appendSep(b, i)
				b = appendJSONString(b, x)
			}
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

func appendSep(b []byte, i int) []byte {
	if i > 0 {
		return append(b, ',')
	}
	return b
}

// appendFloat writes f as JSON does; NaN and infinities, which JSON cannot
// hold, as null.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendJSONString appends s quoted as a JSON string: quotes, backslashes
// and control characters escaped, invalid UTF-8 replaced by U+FFFD, and
// U+2028 and U+2029 escaped (as encoding/json does).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\\ufffd"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Shutdown implements sdktrace.SpanExporter.
func (j *JSONL) Shutdown(context.Context) error { return nil }

func kindName(k trace.SpanKind) string {
	switch k {
	case trace.SpanKindServer:
		return "server"
	case trace.SpanKindClient:
		return "client"
	case trace.SpanKindProducer:
		return "producer"
	case trace.SpanKindConsumer:
		return "consumer"
	}
	return "internal"
}

func codeName(c codes.Code) string {
	switch c {
	case codes.Ok:
		return "ok"
	case codes.Error:
		return "error"
	}
	return "unset"
}

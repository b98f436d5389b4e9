package binder

import (
	"fmt"
	"reflect"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// endAttrRoom is the room a span keeps for the attributes set before it
// ends (a server span's route, status code, addresses), so that they do
// not grow its slice.
const endAttrRoom = 8

// span is a Provider's recording span. It is also the ended span its
// processors receive: once ended it changes no more, so it is handed over
// as it is, with no snapshot.
type span struct {
	// ReadWriteSpan is nil: embedding it only brings the unexported
	// methods that keep ReadOnlySpan from being implemented outside the
	// SDK. Every exported method is defined below (TestSpanMethods).
	sdktrace.ReadWriteSpan

	tracer *Tracer
	sc     trace.SpanContext
	parent trace.SpanContext
	kind   trace.SpanKind

	mu       sync.Mutex
	ended    bool
	name     string
	start    time.Time
	end      time.Time
	status   sdktrace.Status
	attrs    []attribute.KeyValue // unique keys, in the order first set
	dropped  int
	events   []sdktrace.Event
	dropEvs  int
	links    []sdktrace.Link
	dropLnks int
	children int
}

func (s *span) limits() *sdktrace.SpanLimits { return &s.tracer.provider.limits }

// setAttributes records attrs as the SDK does once it de-duplicated them: a
// key set again keeps its place and takes the new value, an invalid
// attribute or a new key past the count limit is dropped and counted, and
// string values are cut to the length limit. Called with mu held (or
// before the span is shared).
func (s *span) setAttributes(attrs []attribute.KeyValue) {
	lim := s.limits()
	for _, a := range attrs {
		if !a.Valid() {
			s.dropped++
			continue
		}
		a = truncateAttr(lim.AttributeValueLengthLimit, a)
		i := 0
		for i < len(s.attrs) && s.attrs[i].Key != a.Key {
			i++
		}
		switch {
		case i < len(s.attrs):
			s.attrs[i] = a
		case lim.AttributeCountLimit < 0 || len(s.attrs) < lim.AttributeCountLimit:
			s.attrs = append(s.attrs, a)
		default:
			s.dropped++
		}
	}
}

// SetAttributes implements trace.Span.
func (s *span) SetAttributes(attrs ...attribute.KeyValue) {
	if len(attrs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.setAttributes(attrs)
	}
}

// End implements trace.Span: the span ends at the given time (now by
// default) and goes to the processors.
func (s *span) End(opts ...trace.SpanEndOption) {
	cfg := trace.NewSpanEndConfig(opts...)
	s.endAt(cfg.Timestamp())
}

// endAt is End at time at (now when zero).
func (s *span) endAt(at time.Time) {
	if at.IsZero() {
		at = time.Now()
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.end = at
	s.mu.Unlock()
	procs := s.tracer.provider.procs.Load()
	if procs == nil {
		return // the provider was shut down: as the SDK, nothing is exported
	}
	for _, sp := range *procs {
		sp.OnEnd(s)
	}
}

// AddEvent implements trace.Span; past the event count limit the oldest
// event is dropped (and counted), as the SDK does.
func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	c := trace.NewEventConfig(opts...)
	e := sdktrace.Event{Name: name, Attributes: c.Attributes(), Time: c.Timestamp()}
	e.Attributes, e.DroppedAttributeCount = limitAttrs(e.Attributes, s.limits().AttributePerEventCountLimit)
	s.events, s.dropEvs = evict(s.events, s.dropEvs, e, s.limits().EventCountLimit)
}

// RecordError implements trace.Span: an exception event, as the SDK's.
func (s *span) RecordError(err error, opts ...trace.EventOption) {
	if err == nil || !s.IsRecording() {
		return
	}
	opts = append(opts, trace.WithAttributes(attribute.String("exception.type", typeName(err)),
		attribute.String("exception.message", err.Error())))
	s.AddEvent("exception", opts...)
}

// AddLink implements trace.Span.
func (s *span) AddLink(l trace.Link) {
	if !l.SpanContext.IsValid() && len(l.Attributes) == 0 && l.SpanContext.TraceState().Len() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.addLink(l)
	}
}

func (s *span) addLink(l trace.Link) {
	sl := sdktrace.Link{SpanContext: l.SpanContext}
	sl.Attributes, sl.DroppedAttributeCount = limitAttrs(l.Attributes, s.limits().AttributePerLinkCountLimit)
	s.links, s.dropLnks = evict(s.links, s.dropLnks, sl, s.limits().LinkCountLimit)
}

// SetStatus implements trace.Span: Ok beats Error beats Unset; only an
// error keeps its description.
func (s *span) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.status.Code > code {
		return
	}
	s.status = sdktrace.Status{Code: code}
	if code == codes.Error {
		s.status.Description = description
	}
}

// SetName implements trace.Span.
func (s *span) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.name = name
	}
}

func (s *span) addChild() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.children++
	}
}

// IsRecording implements trace.Span.
func (s *span) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

// SpanContext implements trace.Span.
func (s *span) SpanContext() trace.SpanContext { return s.sc }

// TracerProvider implements trace.Span.
func (s *span) TracerProvider() trace.TracerProvider { return s.tracer.provider }

// The ReadOnlySpan methods. The exporters call them once the span ended,
// when nothing changes any more; processors' OnStart may call them before.

func (s *span) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

func (s *span) Parent() trace.SpanContext { return s.parent }
func (s *span) SpanKind() trace.SpanKind  { return s.kind }
func (s *span) StartTime() time.Time      { return s.start }

func (s *span) EndTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

func (s *span) Attributes() []attribute.KeyValue {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.attrs) == 0 {
		return nil // as the SDK's
	}
	return s.attrs
}

func (s *span) Links() []sdktrace.Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links
}

func (s *span) Events() []sdktrace.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

func (s *span) Status() sdktrace.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *span) InstrumentationScope() instrumentation.Scope { return s.tracer.scope }

//nolint:staticcheck // part of ReadOnlySpan
func (s *span) InstrumentationLibrary() instrumentation.Library { return s.tracer.scope }

func (s *span) Resource() *resource.Resource { return s.tracer.provider.res }

func (s *span) DroppedAttributes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

func (s *span) DroppedLinks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropLnks
}

func (s *span) DroppedEvents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropEvs
}

func (s *span) ChildSpanCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.children
}

// limitAttrs keeps the first limit attributes (all with a negative limit)
// and says how many it dropped.
func limitAttrs(attrs []attribute.KeyValue, limit int) ([]attribute.KeyValue, int) {
	if limit >= 0 && len(attrs) > limit {
		return attrs[:limit], len(attrs) - limit
	}
	return attrs, 0
}

// evict appends x to q, dropping (and counting) the oldest past limit. With
// a zero limit every one is dropped and counted (the SDK counts them too,
// but reports the count only for a span that kept some).
func evict[T any](q []T, dropped int, x T, limit int) ([]T, int) {
	if limit == 0 {
		return q, dropped + 1
	}
	if limit > 0 && len(q) >= limit {
		q = append(q[:0:0], q[1:]...)
		dropped++
	}
	return append(q, x), dropped
}

// typeName names err's type as the SDK's RecordError does.
func typeName(err error) string {
	t := reflect.TypeOf(err)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String()
	}
	return fmt.Sprintf("%s.%s", t.PkgPath(), t.Name())
}

// truncateAttr cuts string values to limit characters as the SDK does
// (limit < 0: no limit). The agent sets only scalar and string-slice
// values; SLICE and MAP values go through as they are.
func truncateAttr(limit int, a attribute.KeyValue) attribute.KeyValue {
	if limit < 0 {
		return a
	}
	switch a.Value.Type() {
	case attribute.STRING:
		if s := a.Value.AsString(); len(s) > limit {
			a.Value = attribute.StringValue(truncate(limit, s))
		}
	case attribute.BYTESLICE:
		if s := a.Value.AsString(); len(s) > limit {
			a.Value = attribute.ByteSliceValue([]byte(s[:limit]))
		}
	case attribute.STRINGSLICE:
		ss := a.Value.AsStringSlice()
		changed := false
		for i, s := range ss {
			if t := truncate(limit, s); t != s {
				ss[i], changed = t, true
			}
		}
		if changed {
			a.Value = attribute.StringSliceValue(ss)
		}
	}
	return a
}

// truncate keeps the first limit characters of s. Invalid UTF-8 bytes in
// the part kept are dropped and not counted, as the SDK does.
func truncate(limit int, s string) string {
	if len(s) <= limit {
		return s
	}
	n := 0
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return truncateInvalid(limit, s)
			}
		}
		if n == limit {
			return s[:i]
		}
		n++
	}
	return s
}

// truncateInvalid keeps the first limit valid characters of s.
func truncateInvalid(limit int, s string) string {
	b := make([]byte, 0, len(s))
	for i, n := 0, 0; i < len(s) && n < limit; {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || size > 1 {
			b = append(b, s[i:i+size]...)
			n++
		}
		i += size
	}
	return string(b)
}

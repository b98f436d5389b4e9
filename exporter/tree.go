package exporter

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tree draws each trace as an indented tree once every span of it that the
// agent started has ended. It is a SpanProcessor because it must see starts
// to know when a trace is finished.
type Tree struct {
	mu     sync.Mutex
	w      io.Writer
	traces map[trace.TraceID]*pending
}

type pending struct {
	open  int
	spans []sdktrace.ReadOnlySpan
}

// NewTree returns a processor drawing to w.
func NewTree(w io.Writer) *Tree {
	return &Tree{w: w, traces: map[trace.TraceID]*pending{}}
}

// OnStart implements sdktrace.SpanProcessor.
func (t *Tree) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := s.SpanContext().TraceID()
	p := t.traces[id]
	if p == nil {
		p = &pending{}
		t.traces[id] = p
	}
	p.open++
}

// OnEnd implements sdktrace.SpanProcessor.
func (t *Tree) OnEnd(s sdktrace.ReadOnlySpan) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := s.SpanContext().TraceID()
	p := t.traces[id]
	if p == nil {
		return
	}
	p.open--
	p.spans = append(p.spans, s)
	if p.open == 0 {
		delete(t.traces, id)
		t.draw(id, p.spans)
	}
}

// Shutdown draws traces that still have open spans, as far as they got.
func (t *Tree) Shutdown(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, p := range t.traces {
		if len(p.spans) > 0 {
			t.draw(id, p.spans)
		}
		delete(t.traces, id)
	}
	return nil
}

// ForceFlush implements sdktrace.SpanProcessor.
func (t *Tree) ForceFlush(context.Context) error { return nil }

func (t *Tree) draw(id trace.TraceID, spans []sdktrace.ReadOnlySpan) {
	present := map[trace.SpanID]bool{}
	for _, s := range spans {
		present[s.SpanContext().SpanID()] = true
	}
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if p := s.Parent().SpanID(); s.Parent().IsValid() && present[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(ss []sdktrace.ReadOnlySpan) {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].StartTime().Before(ss[j].StartTime()) })
	}
	byStart(roots)
	var sb strings.Builder
	fmt.Fprintf(&sb, "trace %s\n", id)
	var walk func(s sdktrace.ReadOnlySpan, prefix string, last bool)
	walk = func(s sdktrace.ReadOnlySpan, prefix string, last bool) {
		branch, next := "├─ ", "│  "
		if last {
			branch, next = "└─ ", "   "
		}
		sb.WriteString(prefix + branch + describe(s) + "\n")
		kids := children[s.SpanContext().SpanID()]
		byStart(kids)
		for i, k := range kids {
			walk(k, prefix+next, i == len(kids)-1)
		}
	}
	for i, r := range roots {
		walk(r, "", i == len(roots)-1)
	}
	io.WriteString(t.w, sb.String())
}

func describe(s sdktrace.ReadOnlySpan) string {
	var sb strings.Builder
	sb.WriteString(s.Name())
	sb.WriteString(" " + s.EndTime().Sub(s.StartTime()).Round(time.Microsecond).String())
	if k := s.SpanKind(); k != trace.SpanKindInternal && k != trace.SpanKindUnspecified {
		sb.WriteString(" [" + kindName(k) + "]")
	}
	if st := s.Status(); st.Code == codes.Error {
		sb.WriteString(" ERROR")
		if st.Description != "" {
			fmt.Fprintf(&sb, " %q", st.Description)
		}
	}
	for _, a := range s.Attributes() {
		if a.Value.Type() == attribute.STRING {
			fmt.Fprintf(&sb, " %s=%q", a.Key, a.Value.AsString())
		} else {
			fmt.Fprintf(&sb, " %s=%s", a.Key, a.Value.Emit())
		}
	}
	return sb.String()
}

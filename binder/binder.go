// Package binder maps the lifecycle of a TracingChannel onto OpenTelemetry
// spans with fixed rules:
//
//   - start: getSpan is asked for a span with the caller's store active; a
//     span is bound as the active span of the call's store, no span opts the
//     call out (nothing bound, every later event of the call does nothing);
//   - error: the span's status becomes error; an exception event is recorded
//     only when CaptureError is set;
//   - end: the span ends if the payload has a result or an error (presence,
//     not value), else the call is pending and async events follow;
//   - asyncStart: nothing; asyncEnd: the span ends;
//   - BeforeSpanEnd runs exactly once per span, while it is open.
//
// The binder carries stores but never looks inside them: a ContextStrategy
// produces and reads them.
package binder

import (
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
)

// EndReasonKey marks spans that did not end by their own lifecycle, with why
// they were ended instead (see the End* reasons).
const EndReasonKey = attribute.Key("tcagent.end_reason")

// Reasons a span was ended by the agent rather than by its call.
const (
	EndUnbind = "unbind"
)

// GetSpan decides whether a call gets a span. parent is the span active
// where the call started (nil when none). Returning nil opts the call out.
type GetSpan func(parent trace.Span, p *channel.Payload) trace.Span

// Exception is what an exception event records of an error.
type Exception struct {
	Type       string
	Message    string
	Attributes []attribute.KeyValue
}

// CaptureFunc decides whether an error is recorded as an exception event and
// with what details.
type CaptureFunc func(err error) (Exception, bool)

// CaptureAll records every error, with its type and message.
func CaptureAll(err error) (Exception, bool) {
	return Exception{Type: ErrorType(err), Message: err.Error()}, true
}

// ErrorType names the type of err: the traced program's type for errors that
// came out of it, else the Go type.
func ErrorType(err error) string {
	if t, ok := err.(interface{ TypeName() string }); ok {
		return t.TypeName()
	}
	return fmt.Sprintf("%T", err)
}

// Options tune a binding. The zero value is valid: no exception events, no
// hook.
type Options struct {
	// CaptureError, when set, is asked on every error event whether to record
	// an exception event. Off by default: errors set the status only.
	CaptureError CaptureFunc
	// BeforeSpanEnd runs once per span, right before it ends.
	BeforeSpanEnd func(span trace.Span, p *channel.Payload)
}

// Binder binds channels to spans. Each channel has at most one binding per
// Binder; a Binder is safe for concurrent use.
type Binder struct {
	strategy ContextStrategy
	store    *channel.Store

	mu       sync.Mutex
	bindings map[*channel.TracingChannel]*binding
}

// New returns a Binder whose stores are produced and read by strategy.
func New(strategy ContextStrategy) *Binder {
	return &Binder{
		strategy: strategy,
		store:    channel.NewStore("binder"),
		bindings: make(map[*channel.TracingChannel]*binding),
	}
}

// Store is the store the binder binds to channels' start events. Publishers
// fork execution contexts to carry it to new goroutines.
func (b *Binder) Store() *channel.Store { return b.store }

// ActiveSpan returns the span active in x, nil when there is none.
func (b *Binder) ActiveSpan(x *channel.Exec) trace.Span {
	return b.strategy.ActiveSpan(x.Value(b.store))
}

// Bind maps ch's lifecycle onto spans made by getSpan. Binding a channel that
// is already bound replaces the earlier binding: its spans still open are
// ended, and its Handle's Unbind no longer has any effect.
func (b *Binder) Bind(ch *channel.TracingChannel, getSpan GetSpan, opts Options) *Handle {
	bd := &binding{binder: b, ch: ch, getSpan: getSpan, opts: opts}
	bd.handlers = &channel.Handlers{
		End:      bd.onEnd,
		Error:    bd.onError,
		AsyncEnd: bd.onAsyncEnd,
	}
	b.mu.Lock()
	old := b.bindings[ch]
	b.bindings[ch] = bd
	if old != nil {
		ch.Unsubscribe(old.handlers)
	}
	ch.Subscribe(bd.handlers)
	ch.BindStore(b.store, bd.transform)
	b.mu.Unlock()
	if old != nil {
		old.endOpen(EndUnbind)
	}
	return &Handle{binding: bd}
}

// Handle is one binding of a channel.
type Handle struct {
	binding *binding
	once    sync.Once
}

// Unbind removes the binding and ends its spans that are still open, marked
// with EndReasonKey. It is idempotent, and does nothing to a newer binding
// of the same channel.
func (h *Handle) Unbind() {
	h.once.Do(func() {
		bd := h.binding
		b := bd.binder
		b.mu.Lock()
		if b.bindings[bd.ch] == bd {
			delete(b.bindings, bd.ch)
			bd.ch.Unsubscribe(bd.handlers)
			bd.ch.UnbindStore(b.store)
		}
		b.mu.Unlock()
		bd.endOpen(EndUnbind)
	})
}

// OpenSpans returns how many spans of this binding are open.
func (h *Handle) OpenSpans() int {
	h.binding.mu.Lock()
	defer h.binding.mu.Unlock()
	return h.binding.nopen
}

type binding struct {
	binder   *Binder
	ch       *channel.TracingChannel
	getSpan  GetSpan
	opts     Options
	handlers *channel.Handlers

	mu    sync.Mutex
	open  call // sentinel of the ring of open calls
	nopen int
}

// call is a bound call; open calls form an intrusive ring so that tracking
// them costs no allocation beyond the call itself.
type call struct {
	span       trace.Span
	p          *channel.Payload
	prev, next *call
	ended      bool
}

func (bd *binding) transform(p *channel.Payload, cur any) any {
	strategy := bd.binder.strategy
	span := bd.getSpan(strategy.ActiveSpan(cur), p)
	if span == nil {
		return cur
	}
	c := &call{span: span, p: p}
	bd.mu.Lock()
	if bd.open.next == nil {
		bd.open.next, bd.open.prev = &bd.open, &bd.open
	}
	c.prev, c.next = bd.open.prev, &bd.open
	c.prev.next, bd.open.prev = c, c
	bd.nopen++
	bd.mu.Unlock()
	p.SetValue(bd, c)
	return strategy.StoreWithActiveSpan(cur, span)
}

func (bd *binding) call(p *channel.Payload) *call {
	c, _ := p.Value(bd).(*call)
	return c
}

func (bd *binding) onError(p *channel.Payload) {
	c := bd.call(p)
	if c == nil || c.ended {
		return
	}
	err := p.Err()
	if err == nil {
		c.span.SetStatus(codes.Error, "")
		return
	}
	c.span.SetStatus(codes.Error, err.Error())
	if bd.opts.CaptureError == nil {
		return
	}
	if ex, ok := bd.opts.CaptureError(err); ok {
		attrs := append([]attribute.KeyValue{
			attribute.String("exception.type", ex.Type),
			attribute.String("exception.message", ex.Message),
		}, ex.Attributes...)
		c.span.AddEvent("exception", trace.WithTimestamp(eventTime(p)), trace.WithAttributes(attrs...))
	}
}

func (bd *binding) onEnd(p *channel.Payload) {
	if !p.HasResult() && !p.HasError() && p.EndReason == "" {
		return // pending: async events follow
	}
	if c := bd.call(p); c != nil {
		bd.finish(c, eventTime(p), p.EndReason)
	}
}

func (bd *binding) onAsyncEnd(p *channel.Payload) {
	if c := bd.call(p); c != nil {
		bd.finish(c, eventTime(p), p.EndReason)
	}
}

// finish ends c's span once, whichever rule gets there first.
func (bd *binding) finish(c *call, ts time.Time, reason string) {
	bd.mu.Lock()
	if c.ended {
		bd.mu.Unlock()
		return
	}
	c.ended = true
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
	bd.nopen--
	bd.mu.Unlock()
	if reason != "" {
		c.span.SetAttributes(EndReasonKey.String(reason))
	}
	if bd.opts.BeforeSpanEnd != nil {
		bd.opts.BeforeSpanEnd(c.span, c.p)
	}
	if s, ok := c.span.(*span); ok {
		s.endAt(ts) // no option made per span
		return
	}
	c.span.End(trace.WithTimestamp(ts))
}

func (bd *binding) endOpen(reason string) {
	now := time.Now()
	for {
		bd.mu.Lock()
		var c *call
		if bd.open.next != nil && bd.open.next != &bd.open {
			c = bd.open.next
		}
		bd.mu.Unlock()
		if c == nil {
			return
		}
		bd.finish(c, now, reason)
	}
}

func eventTime(p *channel.Payload) time.Time {
	if p.Time.IsZero() {
		return time.Now()
	}
	return p.Time
}

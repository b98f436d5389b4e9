package binder

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// ContextStrategy produces and reads the stores the binder carries. The
// binder never looks inside a store: it asks the strategy for a store with a
// span active and, later, which span a store has active. That keeps the
// binder independent of how a program represents context.
type ContextStrategy interface {
	// StoreWithActiveSpan returns a store derived from parent (nil when the
	// goroutine has none yet) in which span is the active span.
	StoreWithActiveSpan(parent any, span trace.Span) any
	// ActiveSpan returns the span active in store, nil when there is none.
	ActiveSpan(store any) trace.Span
}

// OTelContext keeps an OpenTelemetry context.Context as the store, so the
// store can be handed to any OpenTelemetry API as a parent context.
type OTelContext struct{}

// StoreWithActiveSpan implements ContextStrategy.
func (OTelContext) StoreWithActiveSpan(parent any, span trace.Span) any {
	ctx, ok := parent.(context.Context)
	if !ok || ctx == nil {
		ctx = context.Background()
	}
	return trace.ContextWithSpan(ctx, span)
}

// ActiveSpan implements ContextStrategy.
func (OTelContext) ActiveSpan(store any) trace.Span {
	ctx, ok := store.(context.Context)
	if !ok || ctx == nil {
		return nil
	}
	s := trace.SpanFromContext(ctx)
	if !s.SpanContext().IsValid() {
		return nil
	}
	return s
}

// Scope is the store of the Scoped strategy: the active span and the scope it
// was opened in.
type Scope struct {
	Span   trace.Span
	Parent *Scope
}

// Scoped keeps a *Scope as the store: cheaper than a context.Context chain
// when nothing but the active span needs carrying.
type Scoped struct{}

// StoreWithActiveSpan implements ContextStrategy.
func (Scoped) StoreWithActiveSpan(parent any, span trace.Span) any {
	p, _ := parent.(*Scope)
	return &Scope{Span: span, Parent: p}
}

// ActiveSpan implements ContextStrategy.
func (Scoped) ActiveSpan(store any) trace.Span {
	s, _ := store.(*Scope)
	if s == nil {
		return nil
	}
	return s.Span
}

// Package channel provides TracingChannel: a named stream of the five
// lifecycle events of a traced operation (start, end, asyncStart, asyncEnd,
// error), published on one Payload per call, and the per-goroutine stores that
// carry context from a call to the work done beneath it.
//
// It mirrors the shape of Node.js's diagnostics_channel tracing channels,
// with one difference forced by Go: there is no ambient "current async
// context", so every publish names the execution context (Exec) it happens
// in — one per goroutine of the traced program.
package channel

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Handlers is a set of subscribers to a channel's events; any may be nil.
// A Handlers value is identified by its address: Unsubscribe takes the same
// pointer that Subscribe did.
type Handlers struct {
	Start      func(*Payload)
	End        func(*Payload)
	AsyncStart func(*Payload)
	AsyncEnd   func(*Payload)
	Error      func(*Payload)
}

// Transform produces the value a store holds for the traced work of a call,
// from the payload and the value the store held when the call started.
type Transform func(p *Payload, current any) any

type boundStore struct {
	store     *Store
	transform Transform
}

// subscribers is replaced wholesale on every change, so publishing reads one
// atomic pointer and never takes a lock.
type subscribers struct {
	handlers []*Handlers
	stores   []boundStore
}

// TracingChannel is a named stream of lifecycle events. It is safe for
// concurrent use; publishing is lock-free.
type TracingChannel struct {
	name string
	mu   sync.Mutex
	subs atomic.Pointer[subscribers]
}

// New returns a channel with no subscribers.
func New(name string) *TracingChannel {
	c := &TracingChannel{name: name}
	c.subs.Store(&subscribers{})
	return c
}

// Name returns the channel's name.
func (c *TracingChannel) Name() string { return c.name }

func (c *TracingChannel) update(f func(s *subscribers)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.subs.Load()
	s := &subscribers{handlers: slices.Clone(old.handlers), stores: slices.Clone(old.stores)}
	f(s)
	c.subs.Store(s)
}

// Subscribe adds h. Subscribing the same *Handlers twice has no effect.
func (c *TracingChannel) Subscribe(h *Handlers) {
	c.update(func(s *subscribers) {
		if !slices.Contains(s.handlers, h) {
			s.handlers = append(s.handlers, h)
		}
	})
}

// Unsubscribe removes h and reports whether it was subscribed.
func (c *TracingChannel) Unsubscribe(h *Handlers) bool {
	found := false
	c.update(func(s *subscribers) {
		if i := slices.Index(s.handlers, h); i >= 0 {
			s.handlers = slices.Delete(s.handlers, i, i+1)
			found = true
		}
	})
	return found
}

// BindStore makes start run transform and set its result as store's value in
// the call's execution context until the call ends. Binding a store again
// replaces its transform.
func (c *TracingChannel) BindStore(store *Store, transform Transform) {
	c.update(func(s *subscribers) {
		for i := range s.stores {
			if s.stores[i].store == store {
				s.stores[i].transform = transform
				return
			}
		}
		s.stores = append(s.stores, boundStore{store, transform})
	})
}

// UnbindStore removes the binding of store and reports whether there was one.
func (c *TracingChannel) UnbindStore(store *Store) bool {
	found := false
	c.update(func(s *subscribers) {
		s.stores = slices.DeleteFunc(s.stores, func(b boundStore) bool {
			if b.store == store {
				found = true
				return true
			}
			return false
		})
	})
	return found
}

// HasSubscribers reports whether publishing would reach anyone; publishers
// use it to skip building payloads nobody reads.
func (c *TracingChannel) HasSubscribers() bool {
	s := c.subs.Load()
	return len(s.handlers) > 0 || len(s.stores) > 0
}

// Start publishes the start of a call in x. Bound stores are transformed
// first, with the caller's values still current in x, and then hold the new
// values while start's subscribers run and until End.
func (c *TracingChannel) Start(x *Exec, p *Payload) {
	s := c.subs.Load()
	if p.restore == nil {
		p.restore = p.restoreBuf[:0]
	}
	for _, b := range s.stores {
		cur := x.Value(b.store)
		next := b.transform(p, cur)
		p.restore = append(p.restore, restore{b.store, cur})
		x.Set(b.store, next)
	}
	for _, h := range s.handlers {
		if h.Start != nil {
			h.Start(p)
		}
	}
}

// End publishes the return of the call, then gives back to x the store values
// it had before Start.
func (c *TracingChannel) End(x *Exec, p *Payload) {
	for _, h := range c.subs.Load().handlers {
		if h.End != nil {
			h.End(p)
		}
	}
	for i := len(p.restore) - 1; i >= 0; i-- {
		x.Set(p.restore[i].store, p.restore[i].prev)
	}
	p.restore = p.restore[:0]
}

// Error publishes the failure of the call (p carries the error).
func (c *TracingChannel) Error(p *Payload) {
	for _, h := range c.subs.Load().handlers {
		if h.Error != nil {
			h.Error(p)
		}
	}
}

// AsyncStart publishes that an async call settled.
func (c *TracingChannel) AsyncStart(p *Payload) {
	for _, h := range c.subs.Load().handlers {
		if h.AsyncStart != nil {
			h.AsyncStart(p)
		}
	}
}

// AsyncEnd publishes that the settled async call's continuation is done.
func (c *TracingChannel) AsyncEnd(p *Payload) {
	for _, h := range c.subs.Load().handlers {
		if h.AsyncEnd != nil {
			h.AsyncEnd(p)
		}
	}
}

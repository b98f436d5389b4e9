package channel

// Store is the Go counterpart of an AsyncLocalStorage: a key whose value
// differs per execution context. Its value in a context is set by channels it
// is bound to and inherited by contexts forked from it.
type Store struct {
	name string
}

// NewStore returns a new store; name is for debugging only.
func NewStore(name string) *Store { return &Store{name: name} }

func (s *Store) String() string { return s.name }

// Exec is one execution context of a traced program — one goroutine. It
// holds the current value of each store. A nil *Exec is valid and empty: it
// reads as no values and ignores writes, for events that happen outside any
// known goroutine.
type Exec struct {
	values []storeValue
}

type storeValue struct {
	store *Store
	value any
}

// NewExec returns an empty context.
func NewExec() *Exec { return &Exec{} }

// Value returns s's value in x, nil when it has none.
func (x *Exec) Value(s *Store) any {
	if x == nil {
		return nil
	}
	for i := range x.values {
		if x.values[i].store == s {
			return x.values[i].value
		}
	}
	return nil
}

// Set makes v the value of s in x.
func (x *Exec) Set(s *Store, v any) {
	if x == nil {
		return
	}
	for i := range x.values {
		if x.values[i].store == s {
			x.values[i].value = v
			return
		}
	}
	x.values = append(x.values, storeValue{s, v})
}

// HasValues reports whether any store has a non-nil value in x: a context
// with none has nothing to pass on.
func (x *Exec) HasValues() bool {
	if x == nil {
		return false
	}
	for i := range x.values {
		if x.values[i].value != nil {
			return true
		}
	}
	return false
}

// Reset empties x for reuse, keeping its memory.
func (x *Exec) Reset() {
	clear(x.values)
	x.values = x.values[:0]
}

// Fork returns a new context that starts with x's current values, as a
// goroutine inherits, at its `go` statement, the context of its creator.
// Later changes to either do not affect the other.
func (x *Exec) Fork() *Exec {
	if x == nil {
		return &Exec{}
	}
	return &Exec{values: append([]storeValue(nil), x.values...)}
}

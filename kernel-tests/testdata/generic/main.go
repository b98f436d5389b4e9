// Command generic is the fixture for probes on generic functions: Go
// compiles them once per GC shape and passes a hidden dictionary first, so
// the arguments a user numbers are not the registers the ABI assigns. It
// also has a method that is inlined at its direct calls, whose DWARF (an
// abstract function without its unnamed result, and an out-of-line copy
// with it) once hid the result. It answers "ok CMD" to each command.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Item is what the pointer-shaped instantiation holds.
type Item struct{ ID int }

// Code is a named type over a basic one: its shape is int16's.
type Code int16

// Label pairs a key with a value of any type; instantiated with int,
// string, *Item and Code (four shapes: int, string, *uint8, int16).
//
//go:noinline
func Label[T any](key string, v T, n int) (T, string) {
	return v, fmt.Sprintf("%s#%d", key, n)
}

// Stack is a generic type with methods.
type Stack[T any] struct{ items []T }

// Push adds v and returns the new depth.
//
//go:noinline
func (s *Stack[T]) Push(v T) int {
	s.items = append(s.items, v)
	return len(s.items)
}

// Top returns the last pushed value and the name given.
//
//go:noinline
func (s *Stack[T]) Top(name string) (string, T) {
	return name, s.items[len(s.items)-1]
}

// Pair has two type parameters.
//
//go:noinline
func Pair[K comparable, V any](k K, v V) int {
	return len(fmt.Sprint(k, v))
}

// meta is inlinable: its direct calls are inlined, its out-of-line copy
// serves the interface call.
type meta struct{ status int }

func (m *meta) Status() int {
	if m.status == 0 {
		return 200
	}
	return m.status
}

type statuser interface{ Status() int }

var sink any

func run() {
	v, l := Label("count", 42, 7)
	sink = fmt.Sprint(v, l)
	s, l := Label("name", "gopher", 8)
	sink = fmt.Sprint(s, l)
	it, l := Label("item", &Item{ID: 5}, 9)
	sink = fmt.Sprint(it.ID, l)
	c, l := Label("code", Code(404), 10)
	sink = fmt.Sprint(c, l)

	var ints Stack[int]
	ints.Push(11)
	ints.Push(12)
	name, top := ints.Top("ints")
	sink = fmt.Sprint(name, top)
	var strs Stack[string]
	strs.Push("a")
	name, ts := strs.Top("strs")
	sink = fmt.Sprint(name, ts)

	sink = Pair("k", 3)

	m := &meta{status: 503}
	statusers = append(statusers[:0], m, &meta{})
	sink = m.Status() + statuses()
}

// statusers hides the concrete type from the compiler, so that its call
// through the interface needs the out-of-line Status.
var statusers []statuser

//go:noinline
func statuses() int {
	n := 0
	for _, s := range statusers {
		n += s.Status()
	}
	return n
}

func main() {
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		if cmd == "run" {
			run()
		}
		fmt.Println("ok " + cmd)
	}
}

package channel_test

import (
	"testing"

	"github.com/tcagent/tcagent/channel"
)

func TestStoreLifetimeAndFork(t *testing.T) {
	ch := channel.New("c")
	s := channel.NewStore("s")
	ch.BindStore(s, func(p *channel.Payload, cur any) any {
		if cur == nil {
			return p.Name
		}
		return cur.(string) + "/" + p.Name
	})
	var seen []any
	x := channel.NewExec()
	h := &channel.Handlers{Start: func(p *channel.Payload) { seen = append(seen, x.Value(s)) }}
	ch.Subscribe(h)
	ch.Subscribe(h) // no duplicate
	a := &channel.Payload{Name: "a"}
	ch.Start(x, a)
	child := x.Fork()
	b := &channel.Payload{Name: "b"}
	ch.Start(x, b)
	if got := x.Value(s); got != "a/b" {
		t.Fatalf("nested value %v", got)
	}
	ch.End(x, b)
	if got := x.Value(s); got != "a" {
		t.Fatalf("after nested end %v", got)
	}
	ch.End(x, a)
	if got := x.Value(s); got != nil {
		t.Fatalf("after outer end %v", got)
	}
	if got := child.Value(s); got != "a" {
		t.Fatalf("forked context lost its inherited value: %v", got)
	}
	if len(seen) != 2 || seen[0] != "a" || seen[1] != "a/b" {
		t.Fatalf("start handlers saw %v, want [a a/b]", seen)
	}
	if !ch.Unsubscribe(h) || ch.Unsubscribe(h) {
		t.Fatal("unsubscribe should succeed exactly once")
	}
	if !ch.UnbindStore(s) || ch.HasSubscribers() {
		t.Fatal("store unbinding failed")
	}
}

func TestPayloadPresenceNotValue(t *testing.T) {
	var p channel.Payload
	if p.HasResult() || p.HasError() {
		t.Fatal("zero payload has a result or error")
	}
	p.SetResult(nil)
	if !p.HasResult() || p.Result() != nil {
		t.Fatal("nil result is not a result")
	}
	var nilErr error
	p.SetError(nilErr)
	if !p.HasError() {
		t.Fatal("error presence lost")
	}
	k1, k2 := new(int), new(int)
	p.SetValue(k1, "one")
	p.SetValue(k2, "two")
	p.SetValue(k1, "uno")
	if p.Value(k1) != "uno" || p.Value(k2) != "two" {
		t.Fatal("payload slots mixed up")
	}
}

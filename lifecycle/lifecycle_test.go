package lifecycle_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/reader"
)

// recorder logs every published event as "kind:name[:detail]".
type recorder struct{ log []string }

func (r *recorder) probe(name string) *lifecycle.Probe {
	ch := channel.New(name)
	ch.Subscribe(&channel.Handlers{
		Start: func(p *channel.Payload) { r.log = append(r.log, "start:"+p.Name) },
		End: func(p *channel.Payload) {
			d := ""
			switch {
			case p.EndReason != "":
				d = ":" + p.EndReason
			case p.HasError():
				d = ":err=" + p.Err().Error()
			case p.HasResult():
				d = ":result"
			}
			r.log = append(r.log, "end:"+p.Name+d)
		},
		Error: func(p *channel.Payload) { r.log = append(r.log, "error:"+p.Name) },
	})
	return &lifecycle.Probe{Channel: ch, Name: name}
}

var t0 = time.Unix(1000, 0)

func ev(kind reader.Kind, g, depth uint64, probe uint32) *reader.Event {
	return &reader.Event{Kind: kind, Goroutine: g, Depth: depth, Probe: probe, Time: t0}
}

func TestStreams(t *testing.T) {
	S, E := reader.Start, reader.End
	cases := []struct {
		name   string
		events []*reader.Event
		want   string
		stats  lifecycle.Stats
		open   int
	}{
		{
			name:   "nested",
			events: []*reader.Event{ev(S, 1, 100, 0), ev(S, 1, 200, 1), ev(E, 1, 200, 1), ev(E, 1, 100, 0)},
			want:   "start:a start:b end:b:result end:a:result",
			stats:  lifecycle.Stats{Events: 4},
		},
		{
			name: "recursion of one probe is kept apart by depth",
			events: []*reader.Event{ev(S, 1, 100, 0), ev(S, 1, 150, 0), ev(S, 1, 200, 0),
				ev(E, 1, 200, 0), ev(E, 1, 150, 0), ev(E, 1, 100, 0)},
			want:  "start:a start:a start:a end:a:result end:a:result end:a:result",
			stats: lifecycle.Stats{Events: 6},
		},
		{
			name:   "interleaved goroutines",
			events: []*reader.Event{ev(S, 1, 100, 0), ev(S, 2, 100, 1), ev(E, 1, 100, 0), ev(E, 2, 100, 1)},
			want:   "start:a start:b end:a:result end:b:result",
			stats:  lifecycle.Stats{Events: 4},
		},
		{
			name:   "end without start is dropped and counted",
			events: []*reader.Event{ev(E, 1, 100, 0), ev(S, 1, 100, 0), ev(E, 1, 100, 1), ev(E, 1, 100, 0)},
			want:   "start:a end:a:result",
			stats:  lifecycle.Stats{Events: 4, UnmatchedEnds: 2},
		},
		{
			name: "a lost return is ended when its caller returns",
			events: []*reader.Event{ev(S, 1, 100, 0), ev(S, 1, 200, 1), /* return of b lost */
				ev(E, 1, 100, 0)},
			want:  "start:a start:b end:b:return_lost end:a:result",
			stats: lifecycle.Stats{Events: 3, LostEnds: 1},
		},
		{
			name: "a start at the depth of an open call ends that call",
			events: []*reader.Event{ev(S, 1, 100, 0), ev(S, 1, 200, 1), ev(S, 1, 200, 1),
				ev(E, 1, 200, 1), ev(E, 1, 100, 0)},
			want:  "start:a start:b end:b:return_lost start:b end:b:result end:a:result",
			stats: lifecycle.Stats{Events: 5, LostEnds: 1},
		},
		{
			name:   "unknown probe",
			events: []*reader.Event{ev(S, 1, 100, 9)},
			want:   "",
			stats:  lifecycle.Stats{Events: 1, UnknownProbe: 1},
		},
		{
			name:   "open calls stay open",
			events: []*reader.Event{ev(S, 1, 100, 0), ev(S, 2, 100, 1)},
			want:   "start:a start:b",
			stats:  lifecycle.Stats{Events: 2},
			open:   2,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{}
			tr := lifecycle.New(map[uint32]*lifecycle.Probe{0: r.probe("a"), 1: r.probe("b")}, lifecycle.Limits{})
			for _, e := range c.events {
				tr.Handle(e)
			}
			if got := strings.Join(r.log, " "); got != c.want {
				t.Errorf("published %q\nwant      %q", got, c.want)
			}
			if tr.Stats() != c.stats {
				t.Errorf("stats %+v, want %+v", tr.Stats(), c.stats)
			}
			if tr.OpenCalls() != c.open {
				t.Errorf("open calls %d, want %d", tr.OpenCalls(), c.open)
			}
			if c.open == 0 && tr.Goroutines() != 0 {
				t.Errorf("%d goroutines still tracked with no open call", tr.Goroutines())
			}
		})
	}
}

func TestErrorAndEndAll(t *testing.T) {
	r := &recorder{}
	tr := lifecycle.New(map[uint32]*lifecycle.Probe{0: r.probe("a"), 1: r.probe("b")}, lifecycle.Limits{})
	tr.Handle(ev(reader.Start, 1, 100, 0))
	failed := ev(reader.End, 1, 100, 0)
	failed.Err = errors.New("boom")
	tr.Handle(failed)
	tr.Handle(ev(reader.Start, 1, 100, 0))
	tr.Handle(ev(reader.Start, 1, 200, 1))
	tr.Handle(ev(reader.Start, 2, 100, 1))
	tr.EndAll(lifecycle.EndDetach, t0)
	got := strings.Join(r.log, " ")
	for _, want := range []string{"start:a error:a end:a:err=boom", "end:b:agent_detach end:a:agent_detach"} {
		if !strings.Contains(got, want) {
			t.Errorf("published %q, want it to contain %q", got, want)
		}
	}
	if n := strings.Count(got, "agent_detach"); n != 3 {
		t.Errorf("%d calls ended at detach, want 3: %s", n, got)
	}
	if tr.OpenCalls() != 0 || tr.Goroutines() != 0 {
		t.Errorf("state left after EndAll: %d calls, %d goroutines", tr.OpenCalls(), tr.Goroutines())
	}
}

func BenchmarkTracker(b *testing.B) {
	ch := channel.New("a")
	tr := lifecycle.New(map[uint32]*lifecycle.Probe{0: {Channel: ch, Name: "a"}}, lifecycle.Limits{})
	start, end := ev(reader.Start, 1, 100, 0), ev(reader.End, 1, 100, 0)
	b.ReportAllocs()
	for b.Loop() {
		tr.Handle(start)
		tr.Handle(end)
	}
}

package exporter_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/exporter"
)

// gate is an exporter that blocks until released and can be made to fail.
type gate struct {
	mu      sync.Mutex
	entered chan struct{} // when not nil, told of each export as it begins
	release chan struct{}
	fail    bool
	got     int
}

func (g *gate) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if g.entered != nil {
		g.entered <- struct{}{}
	}
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail {
		return errors.New("backend down")
	}
	g.got += len(spans)
	return nil
}

func (g *gate) Shutdown(context.Context) error { return nil }

func spansInto(p sdktrace.SpanProcessor, n int) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p))
	for i := 0; i < n; i++ {
		_, s := tp.Tracer("t").Start(context.Background(), "s")
		s.End()
	}
}

func TestBatcherCountsDropsAndFailures(t *testing.T) {
	g := &gate{release: make(chan struct{}), entered: make(chan struct{}, 10)}
	var seen []error
	b := exporter.NewBatcher(g, exporter.BatchOptions{QueueSize: 10, BatchSize: 5, Interval: time.Hour}, func(err error) { seen = append(seen, err) })
	// The first batch of 5 blocks in the exporter; 10 more fill the queue;
	// 5 are dropped.
	spansInto(b, 5)
	select {
	case <-g.entered: // the first batch left the queue and waits in the exporter
	case <-time.After(30 * time.Second):
		t.Fatal("the first full batch was never exported")
	}
	spansInto(b, 15)
	if st := b.Stats(); st.Dropped != 5 {
		t.Fatalf("dropped %d, want 5", st.Dropped)
	}
	close(g.release)
	if err := b.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Exported != 15 || g.got != 15 {
		t.Fatalf("exported %d (exporter got %d), want 15", st.Exported, g.got)
	}
	g.mu.Lock()
	g.fail = true
	g.mu.Unlock()
	spansInto(b, 3)
	if err := b.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Failed != 3 || st.ExportErrors != 1 || len(seen) != 1 {
		t.Fatalf("stats %+v, errors %v: want 3 failed spans in 1 failed export", st, seen)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBatcherShutdownDeadline(t *testing.T) {
	g := &gate{release: make(chan struct{})} // never released
	b := exporter.NewBatcher(g, exporter.BatchOptions{QueueSize: 100, BatchSize: 5, Interval: time.Hour, ExportTimeout: time.Hour}, nil)
	spansInto(b, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Shutdown(ctx); err == nil {
		t.Fatal("shutdown with a stuck exporter returned no error")
	}
	// The batch in the export and the 15 queued behind it are all given
	// up, and counted as such, not as failed exports.
	if st := b.Stats(); st.Abandoned != 20 || st.Exported != 0 || st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v, want the 20 spans abandoned", st)
	}
}

// deaf is an exporter that ignores its context: it returns only when told.
type deaf struct{ release chan struct{} }

func (d deaf) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	<-d.release
	return nil
}
func (deaf) Shutdown(context.Context) error { return nil }

func TestBatcherShutdownDeafExporter(t *testing.T) {
	d := deaf{release: make(chan struct{})}
	defer close(d.release)
	b := exporter.NewBatcher(d, exporter.BatchOptions{QueueSize: 100, BatchSize: 5, Interval: time.Hour, ExportTimeout: time.Hour}, nil)
	spansInto(b, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("shutdown past its deadline returned no error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown waited for an exporter that ignores its context")
	}
	st := b.Stats()
	if st.Abandoned != 12 {
		t.Fatalf("stats %+v, want all 12 abandoned", st)
	}
	// Counts are final: the export returning late changes nothing.
	d.release <- struct{}{}
	time.Sleep(50 * time.Millisecond)
	if st2 := b.Stats(); st2 != st {
		t.Errorf("counts changed after Shutdown returned: %+v then %+v", st, st2)
	}
}

// TestSampler applies each sampler to roots and to children of remote
// parents, with trace ids a 0.5 ratio samples and ones it does not: the
// parent-based samplers follow the parent whatever the id, the others never
// look at it.
func TestSampler(t *testing.T) {
	low := trace.TraceID{15: 1}                                                                         // sampled by ratio 0.5
	high := trace.TraceID{8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff} // not sampled by ratio 0.5
	parent := func(id trace.TraceID, sampled bool) context.Context {
		flags := trace.TraceFlags(0)
		if sampled {
			flags = trace.FlagsSampled
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: id, SpanID: trace.SpanID{7: 1}, TraceFlags: flags, Remote: true})
		return trace.ContextWithRemoteSpanContext(context.Background(), sc)
	}
	cases := []struct {
		name string
		ctx  context.Context
		id   trace.TraceID
	}{
		{"root, id the ratio samples", context.Background(), low},
		{"root, id the ratio drops", context.Background(), high},
		{"sampled parent, id the ratio drops", parent(high, true), high},
		{"unsampled parent, id the ratio samples", parent(low, false), low},
	}
	want := map[string]struct {
		root    float64
		samples [4]bool
	}{
		"always_on":                {1, [4]bool{true, true, true, true}},
		"always_off":               {0, [4]bool{false, false, false, false}},
		"traceidratio":             {0.5, [4]bool{true, false, false, true}},
		"parentbased_always_on":    {1, [4]bool{true, true, true, false}},
		"parentbased_always_off":   {0, [4]bool{false, false, true, false}},
		"parentbased_traceidratio": {0.5, [4]bool{true, false, true, false}},
	}
	for name, w := range want {
		s, r, err := exporter.Sampler(name, "0.5")
		if err != nil || r != w.root {
			t.Errorf("%s: root ratio %v, %v; want %v", name, r, err, w.root)
			continue
		}
		for i, c := range cases {
			got := s.ShouldSample(sdktrace.SamplingParameters{ParentContext: c.ctx, TraceID: c.id, Name: "s"}).Decision == sdktrace.RecordAndSample
			if got != w.samples[i] {
				t.Errorf("%s, %s: sampled %v, want %v", name, c.name, got, w.samples[i])
			}
		}
	}
	if _, _, err := exporter.Sampler("sometimes", ""); err == nil {
		t.Error("unknown sampler accepted")
	}
	if _, _, err := exporter.Sampler("traceidratio", "2"); err == nil {
		t.Error("ratio 2 accepted")
	}
}

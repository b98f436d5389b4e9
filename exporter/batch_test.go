package exporter_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/exporter"
)

// gate is an exporter that blocks until released and can be made to fail.
type gate struct {
	mu      sync.Mutex
	release chan struct{}
	fail    bool
	got     int
}

func (g *gate) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
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
	g := &gate{release: make(chan struct{})}
	var seen []error
	b := exporter.NewBatcher(g, exporter.BatchOptions{QueueSize: 10, BatchSize: 5, Interval: time.Hour}, func(err error) { seen = append(seen, err) })
	// The first batch of 5 blocks in the exporter; 10 more fill the queue;
	// 5 are dropped.
	spansInto(b, 5)
	time.Sleep(50 * time.Millisecond)
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

func TestSampler(t *testing.T) {
	for name, root := range map[string]float64{"always_on": 1, "always_off": 0, "traceidratio": 0.5, "parentbased_always_on": 1,
		"parentbased_always_off": 0, "parentbased_traceidratio": 0.5} {
		if _, r, err := exporter.Sampler(name, "0.5"); err != nil || r != root {
			t.Errorf("%s: root ratio %v, %v; want %v", name, r, err, root)
		}
	}
	if _, _, err := exporter.Sampler("sometimes", ""); err == nil {
		t.Error("unknown sampler accepted")
	}
	if _, _, err := exporter.Sampler("traceidratio", "2"); err == nil {
		t.Error("ratio 2 accepted")
	}
}

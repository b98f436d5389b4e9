package exporter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BatchOptions bound a Batcher.
type BatchOptions struct {
	QueueSize     int           // spans waiting to be exported; default 8192
	BatchSize     int           // spans per export; default 512
	Interval      time.Duration // longest wait before a partial batch goes; default 1s
	ExportTimeout time.Duration // per export; default 10s
}

// BatchStats count what a Batcher did with the spans it was given.
type BatchStats struct {
	Exported     uint64 // spans the exporter accepted
	Dropped      uint64 // spans dropped: the queue was full
	Failed       uint64 // spans in exports that failed
	ExportErrors uint64 // failed exports
	// Abandoned counts spans given up at shutdown: still queued, or in an
	// export cut short, when Shutdown's deadline passed.
	Abandoned uint64
}

// Batcher is a span processor that exports ended spans in batches through a
// bounded queue. Unlike the SDK's batch processor it counts every span it
// drops and every failed export, so that nothing is lost silently. A slow or
// absent backend never blocks the pipeline: the queue fills and the excess
// is dropped and counted.
type Batcher struct {
	exp  sdktrace.SpanExporter
	opts BatchOptions

	queue chan sdktrace.ReadOnlySpan
	flush chan chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	// abort is every export's parent: Shutdown cancels it at its deadline,
	// so that an export to a backend that never answers ends then.
	abort       context.Context
	cancelAbort context.CancelFunc

	exported, dropped, failed, errs, abandoned atomic.Uint64
	// held counts spans queued or being exported; once Shutdown returned
	// (final), what is still held is abandoned and counts change no more.
	held    atomic.Int64
	mu      sync.Mutex
	final   bool
	onError func(error)
}

// abortGrace is how long Shutdown, past its deadline, lets the loop count
// what it gives up: an exporter that honours its context returns at once.
const abortGrace = 200 * time.Millisecond

// NewBatcher starts a Batcher over exp. onError, when not nil, hears about
// failed exports (for logging; they are counted either way).
func NewBatcher(exp sdktrace.SpanExporter, opts BatchOptions, onError func(error)) *Batcher {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 8192
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.ExportTimeout <= 0 {
		opts.ExportTimeout = 10 * time.Second
	}
	b := &Batcher{exp: exp, opts: opts, queue: make(chan sdktrace.ReadOnlySpan, opts.QueueSize),
		flush: make(chan chan struct{}), done: make(chan struct{}), onError: onError}
	b.abort, b.cancelAbort = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.loop()
	return b
}

// Stats returns the counts so far.
func (b *Batcher) Stats() BatchStats {
	return BatchStats{Exported: b.exported.Load(), Dropped: b.dropped.Load(), Failed: b.failed.Load(), ExportErrors: b.errs.Load(),
		Abandoned: b.abandoned.Load()}
}

// OnStart implements sdktrace.SpanProcessor.
func (b *Batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: it never blocks.
func (b *Batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case b.queue <- s:
		b.held.Add(1)
	default:
		b.dropped.Add(1)
	}
}

// resolve counts what became of n spans of an export that returned err.
func (b *Batcher) resolve(n int, err error) {
	b.mu.Lock()
	if b.final {
		b.mu.Unlock()
		return
	}
	b.held.Add(-int64(n))
	failed := false
	switch {
	case err == nil:
		b.exported.Add(uint64(n))
	case b.abort.Err() != nil:
		b.abandoned.Add(uint64(n))
	default:
		b.errs.Add(1)
		b.failed.Add(uint64(n))
		failed = true
	}
	b.mu.Unlock()
	if failed && b.onError != nil {
		b.onError(err)
	}
}

func (b *Batcher) loop() {
	defer b.wg.Done()
	batch := make([]sdktrace.ReadOnlySpan, 0, b.opts.BatchSize)
	tick := time.NewTicker(b.opts.Interval)
	defer tick.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		err := b.abort.Err()
		if err == nil { // past Shutdown's deadline, nothing more is sent
			ctx, cancel := context.WithTimeout(b.abort, b.opts.ExportTimeout)
			err = b.exp.ExportSpans(ctx, batch)
			cancel()
		}
		b.resolve(len(batch), err)
		clear(batch)
		batch = batch[:0]
	}
	add := func(s sdktrace.ReadOnlySpan) {
		batch = append(batch, s)
		if len(batch) == b.opts.BatchSize {
			send()
		}
	}
	drain := func() {
		for {
			select {
			case s := <-b.queue:
				add(s)
			default:
				send()
				return
			}
		}
	}
	for {
		select {
		case s := <-b.queue:
			add(s)
		case <-tick.C:
			send()
		case ack := <-b.flush:
			drain()
			close(ack)
		case <-b.done:
			drain()
			return
		}
	}
}

// ForceFlush exports what is queued.
func (b *Batcher) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case b.flush <- ack:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, within ctx's deadline, and shuts the
// exporter down. At the deadline the export in flight is cancelled and
// nothing more is sent: the spans given up are counted (Abandoned), and
// Shutdown returns right after.
func (b *Batcher) Shutdown(ctx context.Context) error {
	var err error
	b.once.Do(func() {
		close(b.done)
		finished := make(chan struct{})
		go func() { b.wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-ctx.Done():
			err = ctx.Err()
			b.cancelAbort()
			select {
			case <-finished:
			case <-time.After(abortGrace): // an exporter deaf to its context
			}
		}
		b.mu.Lock()
		b.final = true
		if n := b.held.Swap(0); n > 0 {
			b.abandoned.Add(uint64(n))
		}
		b.mu.Unlock()
		b.cancelAbort()
		// The exporter closes its connections; past the deadline it gets
		// a moment for that, not for sending.
		sctx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			sctx, cancel = context.WithTimeout(context.Background(), abortGrace)
			defer cancel()
		}
		if e := b.exp.Shutdown(sctx); e != nil && err == nil {
			err = e
		}
	})
	return err
}

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

	exported, dropped, failed, errs atomic.Uint64
	onError                         func(error)
}

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
	b.wg.Add(1)
	go b.loop()
	return b
}

// Stats returns the counts so far.
func (b *Batcher) Stats() BatchStats {
	return BatchStats{Exported: b.exported.Load(), Dropped: b.dropped.Load(), Failed: b.failed.Load(), ExportErrors: b.errs.Load()}
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
	default:
		b.dropped.Add(1)
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
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.ExportTimeout)
		err := b.exp.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			b.errs.Add(1)
			b.failed.Add(uint64(len(batch)))
			if b.onError != nil {
				b.onError(err)
			}
		} else {
			b.exported.Add(uint64(len(batch)))
		}
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
// exporter down. Spans still queued when the deadline passes are counted as
// dropped.
func (b *Batcher) Shutdown(ctx context.Context) error {
	var err error
	b.once.Do(func() {
		close(b.done)
		finished := make(chan struct{})
		go func() { b.wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-ctx.Done():
			b.dropped.Add(uint64(len(b.queue)))
			err = ctx.Err()
		}
		if e := b.exp.Shutdown(ctx); e != nil && err == nil {
			err = e
		}
	})
	return err
}

package agent

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/reader"
)

// BenchmarkSessionHeap reports the heap one more traced process of an
// image holds in userspace (heap-B/session, HeapInuse after a GC, for 100
// sessions added at once, no kernel): its lifecycle tracker, decoder,
// Provider and resource, and its bound channels, here for 9 span probes
// (as many as the http set attaches to a server). The spans of every
// session go through one processor, as the daemon's do. bench/README §8g
// records the figures.
func BenchmarkSessionHeap(b *testing.B) {
	span := true
	var ps []*probes.Probe
	for i := range 9 {
		ps = append(ps, &probes.Probe{ID: uint32(i), Spec: probes.Spec{Symbol: fmt.Sprintf("main.f%d", i), Span: &span},
			Role: probes.Role{Kind: probes.RoleSpan}, ErrorCapture: -1, HandleCapture: -1, ReceiverCapture: -1,
			EntryAttrs: []probes.CapturedAttr{{Key: "s", Type: "string", MaxLen: 128}},
			Recipe:     bpf.Recipe{Entry: []bpf.Capture{{Kind: bpf.CapString, Reg: 1, Reg2: 2, MaxLen: 128}}}})
	}
	processor := sdktrace.NewSimpleSpanProcessor(discard{})
	const sessions = 100
	var perSession float64
	for b.Loop() {
		n := &Node{clock: reader.NewClock(), sessions: map[uint32]*Session{}, rd: reader.New(nil, reader.Options{})}
		im := &Image{node: n, bin: &probes.Binary{GoVersion: "go1.26.8"}, probes: ps, nuser: len(ps),
			log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		before := heapInuse()
		for pid := range sessions {
			// pids no process has: the resource is made from what /proc
			// has not, as for a process that just exited. No kernel to
			// admit them in: routed as the node's admit does.
			s, err := im.newSession(SessionConfig{PID: 1<<22 + pid, Processor: processor})
			if err != nil {
				b.Fatal(err)
			}
			n.route(s)
		}
		perSession = float64(heapInuse()-before) / sessions
		runtime.KeepAlive(im)
	}
	b.ReportMetric(perSession, "heap-B/session")
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

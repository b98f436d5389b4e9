package agent

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/reader"
)

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// record encodes a ring-buffer record as tracer.c lays it out (tracer.h):
// a 48-byte header, 8 values of 32 bytes, and for strings 4 slots of 256.
func record(kind reader.Kind, goid, depth uint64, probe uint32, vals [][3]uint64, str string) []byte {
	size := 48 + 8*32
	if str != "" {
		size += 4 * 256
	}
	b := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(time.Now().UnixNano()))
	le.PutUint64(b[8:], goid)
	le.PutUint64(b[16:], depth)
	le.PutUint32(b[24:], probe)
	le.PutUint16(b[40:], uint16(kind))
	b[42] = byte(len(vals))
	if str != "" {
		b[43] = 1
		copy(b[48+8*32:], str)
	}
	for i, v := range vals {
		le.PutUint64(b[48+i*32:], v[0])
		le.PutUint64(b[48+i*32+8:], v[1])
		le.PutUint64(b[48+i*32+16:], v[2])
	}
	return b
}

// benchSession is a Session with one probe (an int and a string captured at
// entry) and no kernel: records are fed to the reader's Dispatch directly.
func benchSession(b *testing.B, span bool) (*Node, *Session) {
	role := probes.Role{Kind: probes.RoleSpan}
	if !span {
		role.Kind = probes.RoleEnrich
	}
	p := &probes.Probe{ID: 0, Spec: probes.Spec{Symbol: "main.f", Name: "f", Span: &span}, Role: role,
		ErrorCapture: -1, HandleCapture: -1, ReceiverCapture: -1,
		EntryAttrs: []probes.CapturedAttr{{Key: "n", Type: "int", Size: 8}, {Key: "s", Type: "string", MaxLen: 128}},
		Recipe:     bpf.Recipe{Entry: []bpf.Capture{{Kind: bpf.CapReg, Reg: 0}, {Kind: bpf.CapString, Reg: 1, Reg2: 2, MaxLen: 128}}}}
	n := &Node{clock: reader.NewClock(), sessions: map[uint32]*Session{}, rd: reader.New(nil, reader.Options{})}
	im := &Image{node: n, bin: &probes.Binary{GoVersion: "go1.26.8"}, probes: []*probes.Probe{p}, nuser: 1,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := im.newSession(SessionConfig{PID: 0, Processor: sdktrace.NewSimpleSpanProcessor(discard{})}) // the records' pid
	if err != nil {
		b.Fatal(err)
	}
	n.route(s) // no kernel to admit it in
	return n, s
}

// BenchmarkPipeline measures the userspace pipeline from raw ring-buffer
// records: decoding, the lifecycle, the binder and an SDK span handed to a
// no-op exporter; "nospan" uses a span:false probe, so that the figure is
// the pipeline's own, without span creation. One op is one call: a start
// and an end record. Run: go test -run '^$' -bench Pipeline ./agent/
func BenchmarkPipeline(b *testing.B) {
	for _, c := range []struct {
		name string
		span bool
	}{{"span", true}, {"nospan", false}} {
		b.Run(c.name, func(b *testing.B) {
			n, s := benchSession(b, c.span)
			// 64 goroutines in turn, so the tracker's maps are exercised.
			var starts, ends [64][]byte
			for g := range starts {
				starts[g] = record(reader.Start, uint64(g+1), 4096, 0, [][3]uint64{{uint64(g), 0, 0}, {11, 0xc000100000, 0}}, "benchmark-key")
				ends[g] = record(reader.End, uint64(g+1), 4096, 0, nil, "")
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				g := i & 63
				n.rd.Dispatch(starts[g])
				n.rd.Dispatch(ends[g])
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(2*b.N)/elapsed.Seconds(), "events/s")
			if st := s.tracker.Stats(); st.UnmatchedEnds != 0 || n.rd.DecodeErrors() != 0 || n.rd.Unattributed() != 0 {
				b.Fatalf("pipeline lost track: %+v, decode errors %d, unattributed %d", st, n.rd.DecodeErrors(), n.rd.Unattributed())
			}
		})
	}
}

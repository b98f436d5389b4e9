package bpf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"unsafe"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestLayout(t *testing.T) {
	if got := unsafe.Sizeof(tracerEvent{}); got != eventSize {
		t.Fatalf("struct event is %d bytes in C, decoder assumes %d", got, eventSize)
	}
	if got := unsafe.Sizeof(tracerValue{}); got != valueSize {
		t.Fatalf("struct value is %d bytes in C, decoder assumes %d", got, valueSize)
	}
	if got := unsafe.Offsetof(tracerEvent{}.Vals); got != headerSize {
		t.Fatalf("values start at %d in C, decoder assumes %d", got, headerSize)
	}
	if got := unsafe.Offsetof(tracerEvent{}.Kind); got != 40 {
		t.Fatalf("kind at %d in C, decoder assumes 40", got)
	}
}

// TestObjectsFresh fails when tracer.c, tracer.h, propagate.c, propagate.h or procs.c changed without `make
// generate`: the committed objects would not be what the sources say.
func TestObjectsFresh(t *testing.T) {
	var src []byte
	for _, f := range []string{"tracer.c", "tracer.h", "propagate.c", "propagate.h", "procs.c"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	sum := sha256.Sum256(src)
	want, err := os.ReadFile("sources.sha256")
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sum[:]); got != strings.TrimSpace(string(want)) {
		t.Fatalf("BPF objects are stale against tracer.c/tracer.h/propagate.c/propagate.h/procs.c: run `make generate` and commit the result")
	}
}

func TestDecode(t *testing.T) {
	raw := make([]byte, eventBigSize)
	le := binary.LittleEndian
	le.PutUint64(raw[0:], 123)
	le.PutUint64(raw[8:], 77)
	le.PutUint64(raw[16:], 4096)
	le.PutUint32(raw[24:], 5)
	le.PutUint32(raw[28:], 1000)
	le.PutUint32(raw[32:], 1001)
	le.PutUint32(raw[36:], 3)
	le.PutUint16(raw[40:], uint16(KindEnd))
	raw[42], raw[43] = 2, 1
	le.PutUint64(raw[headerSize:], 0xdead)
	le.PutUint64(raw[headerSize+valueSize:], 5)
	le.PutUint64(raw[headerSize+valueSize+24:], 0xfeed)
	raw[44] = 0b10 // value 1 failed
	copy(raw[eventSize+StringSlotSize:], "hello")
	var e Event
	if err := e.Decode(raw); err != nil {
		t.Fatal(err)
	}
	if e.Time != 123 || e.Goroutine != 77 || e.Depth != 4096 || e.Probe != 5 || e.Pid != 1000 || e.Tid != 1001 || e.Lost != 3 || e.Kind != KindEnd || e.NValues != 2 {
		t.Fatalf("header decoded wrong: %+v", e)
	}
	if e.Values[0].A != 0xdead || e.Values[1].A != 5 || e.Values[1].D != 0xfeed || !e.Values[1].ReadFailed || e.Values[0].ReadFailed {
		t.Fatalf("values decoded wrong: %+v", e.Values[:2])
	}
	if s := string(e.String(1, 5)); s != "hello" {
		t.Fatalf("string slot 1 = %q", s)
	}
	if err := e.Decode(raw[:eventSize-1]); err == nil {
		t.Fatal("short record accepted")
	}
	if err := e.Decode(raw[:eventSize]); err == nil {
		t.Fatal("record flagged with strings but without them accepted")
	}
	if n := testing.AllocsPerRun(100, func() { _ = e.Decode(raw) }); n != 0 {
		t.Fatalf("Decode allocates %v times", n)
	}
}

// TestSampleBound: a trace the kernel makes is sampled exactly when the
// OpenTelemetry SDK's TraceIDRatioBased sampler samples its root.
func TestSampleBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ratio := range []float64{0, 0.001, 0.25, 0.5, 0.999, 1} {
		s := sdktrace.TraceIDRatioBased(ratio)
		bound := SampleBoundOf(ratio)
		for i := 0; i < 10000; i++ {
			hi, lo := rng.Uint64(), rng.Uint64()
			var id trace.TraceID
			binary.BigEndian.PutUint64(id[:8], hi)
			binary.BigEndian.PutUint64(id[8:], lo)
			sdk := s.ShouldSample(sdktrace.SamplingParameters{TraceID: id}).Decision == sdktrace.RecordAndSample
			if kernel := lo>>1 < bound; kernel != sdk {
				t.Fatalf("ratio %v, trace %s: kernel samples %v, the SDK %v", ratio, id, kernel, sdk)
			}
		}
	}
}

package bpf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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

// TestObjectsFresh fails when a C source, an object or a binding was edited
// or regenerated alone: sources.sha256 (written by `make generate`) holds
// the hash of each of them, so the committed objects are the ones made from
// the committed sources. A stale object with a rewritten hash file passes
// here; TestObjectsRebuild catches that.
func TestObjectsFresh(t *testing.T) {
	want, err := os.ReadFile("sources.sha256")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("sources.sha256: malformed line %q", line)
		}
		listed[name] = true
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s changed since `make generate` (sources.sha256): run `make generate` and commit the result", name)
		}
	}
	generated, _ := filepath.Glob("*_bpfel.*")
	sources, _ := filepath.Glob("*.[ch]")
	for _, f := range append(generated, sources...) {
		if !listed[f] {
			t.Errorf("%s is not in sources.sha256: the go:generate line in gen.go must hash it", f)
		}
	}
}

// TestObjectsRebuild runs gen.go's bpf2go directives into a temporary
// directory and compares the result with the committed objects and
// bindings, byte for byte: clang-19 builds the same bytes from the same
// sources, so any difference is a stale object. It needs clang-19 and
// llvm-strip-19 (scripts/test-setup.sh installs them, so it runs under `make
// test` and in CI).
func TestObjectsRebuild(t *testing.T) {
	for _, tool := range []string{"clang-19", "llvm-strip-19"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/test-setup.sh installs it): the objects cannot be rebuilt to compare", tool)
		}
	}
	gen, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n := 0
	for _, line := range strings.Split(string(gen), "\n") {
		args, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go ")
		if !ok {
			continue
		}
		n++
		cmd := exec.Command("sh", "-c", "go tool bpf2go -output-dir "+dir+" "+args)
		cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bpf2go %s: %v\n%s", args, err, out)
		}
	}
	if n == 0 {
		t.Fatal("no bpf2go directive in gen.go")
	}
	built, _ := filepath.Glob(filepath.Join(dir, "*"))
	committed, _ := filepath.Glob("*_bpfel.*")
	if len(built) != len(committed) {
		t.Errorf("bpf2go built %d files, %d are committed", len(built), len(committed))
	}
	for _, f := range built {
		fresh, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		old, err := os.ReadFile(filepath.Base(f))
		if err != nil {
			t.Errorf("%s: built but not committed: %v", filepath.Base(f), err)
			continue
		}
		if !bytes.Equal(fresh, old) {
			t.Errorf("%s is stale: clang-19 builds different bytes from the sources; run `make generate` and commit the result", filepath.Base(f))
		}
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

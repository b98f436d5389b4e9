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
	if got := unsafe.Sizeof(tracerEvent{}); got != EventSize {
		t.Fatalf("struct event is %d bytes in C, decoder assumes %d", got, EventSize)
	}
	if got := unsafe.Sizeof(tracerValue{}); got != EventValueSize {
		t.Fatalf("struct value is %d bytes in C, decoder assumes %d", got, EventValueSize)
	}
	if got := unsafe.Offsetof(tracerEvent{}.Vals); got != EventHeaderSize {
		t.Fatalf("values start at %d in C, decoder assumes %d", got, EventHeaderSize)
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

package builtin

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/tcagent/tcagent/internal/gotoolchain"
	"github.com/tcagent/tcagent/probes"
)

// heapSrc is a small net/http server, as the daemon's scale benchmark
// traces.
const heapSrc = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	http.ListenAndServe(os.Args[1], nil)
}
`

// BenchmarkAnalysedHeap reports the heap an analysed executable holds once
// the image has compiled its probes (heap-B/exe, HeapInuse after a GC, for
// 8 analyses of a net/http server kept at once): "full" keeps the Binary
// as analysis left it, "compacted" as an image keeps it (Binary.Compact).
// bench/README §8g records the figures.
func BenchmarkAnalysedHeap(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(heapSrc), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module heapsrv\n\ngo 1.21\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "srv")
	if err := gotoolchain.Build("go1.26.8", dir, bin, filepath.Join(dir, "modcache"), "."); err != nil {
		b.Fatal(err)
	}
	for _, compact := range []bool{false, true} {
		name := "full"
		if compact {
			name = "compacted"
		}
		b.Run(name, func(b *testing.B) {
			const kept = 8
			var perExe float64
			for b.Loop() {
				before := heapInuse()
				bins := make([]*probes.Binary, kept)
				for i := range bins {
					bins[i] = analyse(b, bin, compact)
				}
				perExe = float64(heapInuse()-before) / kept
				for _, x := range bins {
					x.Close()
				}
			}
			b.ReportMetric(perExe, "heap-B/exe")
		})
	}
}

// analyse does what an image does with an executable before tracing it:
// open it, find the runtime's offsets, compile the http set and the runtime
// probes, read what the span side asks, and, if compact, drop the tables.
func analyse(b *testing.B, path string, compact bool) *probes.Binary {
	bin, err := probes.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	rt, err := bin.Runtime()
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := Resolve(bin, []string{"http"}, Options{}, rt, 0); err != nil {
		b.Fatal(err)
	}
	if _, err := probes.CompileRuntime(bin, rt, probes.RuntimeOptions{}); err != nil {
		b.Fatal(err)
	}
	UsesRouter(bin)
	if compact {
		bin.Compact()
	}
	return bin
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

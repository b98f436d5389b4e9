package kerneltests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/daemon"
)

// TestDaemonHeapPerExecutable: an executable the daemon traces costs it at
// most 1 MiB of heap (#24's goal) once attached: the image keeps its
// analysed binary compact, not its function table and DWARF (about 5 MB
// for this fixture). Four copies of the fixture (with DWARF, the most
// analysis keeps) at four paths are four images; each process's http
// spans are whole, read through the compacted binary (the /boom handler's
// panic message is a literal read from the file). After every process
// left, a new process of one copy is analysed again from the daemon's
// cache of compacted binaries, and traced the same.
func TestDaemonHeapPerExecutable(t *testing.T) {
	const copies = 4
	dir := t.TempDir()
	var bins []string
	for i := range copies {
		bin := filepath.Join(dir, fmt.Sprintf("srv-%d", i))
		if err := copyFile(newest(t, false).path, bin); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		bins = append(bins, bin)
	}
	cfg, err := daemon.ParseConfig([]byte(fmt.Sprintf("selectors:\n  - exe: %s/srv-*\n    builtin: [http]\n", dir)), dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	d := daemon.New(daemon.Options{Config: cfg, Self: os.Getpid(),
		Base: agent.Config{SessionConfig: agent.SessionConfig{Processor: rec}, ImageConfig: agent.ImageConfig{PollInterval: 10 * time.Millisecond}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()
	waitFor(t, "daemon ready", d.Ready)
	base := liveHeap()

	var tgs []*target
	for _, bin := range bins {
		tgs = append(tgs, startTarget(t, bin))
	}
	waitFor(t, "every copy traced", func() bool { st := d.Stats(); return st.Traced == copies && st.Images == copies })
	heap := liveHeap()
	per := (int64(heap) - int64(base)) / copies
	t.Logf("heap: %d KiB with the daemon ready, %d KiB with %d executables traced: %d KiB each", base>>10, heap>>10, copies, per>>10)
	if per > 1<<20 {
		t.Errorf("each traced executable holds %d KiB of the daemon's heap, want at most 1 MiB", per>>10)
	}
	for _, tg := range tgs {
		tg.run(t, "http")
		checkHTTPSpans(t, rec, tg.pid())
	}

	for _, tg := range tgs {
		tg.stdin.Close()
		tg.cmd.Process.Kill()
		tg.cmd.Wait()
	}
	waitFor(t, "every image released", func() bool { st := d.Stats(); return st.Traced == 0 && st.Images == 0 })
	again := startTarget(t, bins[0])
	waitFor(t, "a copy traced again", func() bool { return d.Stats().Traced == 1 })
	again.run(t, "http")
	checkHTTPSpans(t, rec, again.pid())
}

// checkHTTPSpans waits for the spans of the fixture's http command in
// process pid (as TestBuiltinHTTP counts them) and checks the /boom
// handler's panic.
func checkHTTPSpans(t *testing.T, rec *tracetest.SpanRecorder, pid int) {
	t.Helper()
	var servers, clients, boom int
	var boomStatus string
	waitFor(t, fmt.Sprintf("pid %d's http spans", pid), func() bool {
		servers, clients, boom = 0, 0, 0
		for _, s := range rec.Ended() {
			if !ofPID(s, pid) {
				continue
			}
			switch s.SpanKind() {
			case trace.SpanKindServer:
				servers++
				if attrs(s)["url.path"] == "/boom" {
					boom++
					boomStatus = s.Status().Description
				}
			case trace.SpanKindClient:
				clients++
			}
		}
		return clients == 5 && boom >= 1 && servers == 3+boom
	})
	if boomStatus != "panic: handler failed" {
		t.Errorf("pid %d: /boom span status %q, want %q", pid, boomStatus, "panic: handler failed")
	}
}

func ofPID(s sdktrace.ReadOnlySpan, pid int) bool {
	v, ok := s.Resource().Set().Value("process.pid")
	return ok && v.AsInt64() == int64(pid)
}

// liveHeap is the test process's heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

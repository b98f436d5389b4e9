// Command uprobe measures the per-call cost of tracing a no-op Go function,
// side by side in one run of one target process: unprobed, the uprobe floor
// (empty BPF programs at tcagent's placement: entry after the stack check and
// every RET), the same empty programs with the entry at offset 0, and
// tcagent's real programs and pipeline with an int and a string captured,
// with and without a span. Run as root: `go run ./bench/uprobe`.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/probes"
)

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

type target struct {
	cmd *exec.Cmd
	in  io.Writer
	out *bufio.Scanner
}

// calls runs n calls of Noop in the target and returns the mean ns per call.
func (t *target) calls(n int) (float64, error) {
	fmt.Fprintln(t.in, n)
	if !t.out.Scan() {
		return 0, fmt.Errorf("target stopped")
	}
	return strconv.ParseFloat(strings.TrimSpace(t.out.Text()), 64)
}

type config struct {
	name  string
	setup func(pid int) (stop func(), err error)
}

func main() {
	calls := flag.Int("calls", 20000, "calls per measurement")
	rounds := flag.Int("rounds", 5, "alternating rounds; the median is reported")
	flag.Parse()
	if err := run(*calls, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(calls, rounds int) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tcagent-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "target")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = "bench/testdata/target"
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build target (run from the repository root): %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	t := &target{cmd: cmd, in: in, out: bufio.NewScanner(out)}

	b, err := probes.Open(bin)
	if err != nil {
		return err
	}
	fn, _ := b.Func("main.Noop")
	code, err := b.Code(fn)
	if err != nil {
		return err
	}
	pl, err := probes.Place(b.Arch, code)
	if err != nil {
		return err
	}
	base, err := b.FileOffset(fn.Entry)
	if err != nil {
		return err
	}
	b.Close()

	empty := func(entry uint64) func(pid int) (func(), error) {
		return func(pid int) (func(), error) { return attachEmpty(bin, pid, base, entry, pl.Returns) }
	}
	tcagent := func(span bool) func(pid int) (func(), error) {
		return func(pid int) (func(), error) { return attachAgent(pid, span) }
	}
	configs := []config{
		{"unprobed", func(int) (func(), error) { return func() {}, nil }},
		{fmt.Sprintf("floor: empty programs, entry+%d and %d RETs", pl.Entry, len(pl.Returns)), empty(pl.Entry)},
		{"empty programs, entry at offset 0", empty(0)},
		{"tcagent: int + string captured, span", tcagent(true)},
		{"tcagent: int + string captured, span: false", tcagent(false)},
	}
	if _, err := t.calls(calls); err != nil { // warm up
		return err
	}
	results := make([][]float64, len(configs))
	for r := 0; r < rounds; r++ {
		for i, c := range configs {
			stop, err := c.setup(cmd.Process.Pid)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			ns, err := t.calls(calls)
			stop()
			if err != nil {
				return err
			}
			results[i] = append(results[i], ns)
		}
	}
	med := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	floor := med(results[1])
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Printf("per-call cost of a probed no-op function (%d calls per measurement, median of %d alternating rounds)\n", calls, rounds)
	fmt.Printf("kernel %s, %s/%s, %d CPUs, %s\n\n", strings.TrimSpace(string(kernel)), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Printf("| %-50s | %10s | %14s |\n", "configuration", "ns/call", "ratio to floor")
	fmt.Printf("|%s|%s|%s|\n", strings.Repeat("-", 52), strings.Repeat("-", 12), strings.Repeat("-", 16))
	for i, c := range configs {
		m := med(results[i])
		fmt.Printf("| %-50s | %10.0f | %14.2f |\n", c.name, m, m/floor)
	}
	return nil
}

func attachEmpty(bin string, pid int, base, entry uint64, rets []uint64) (func(), error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Kprobe,
		AttachType:   ebpf.AttachTraceUprobeMulti,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return nil, err
	}
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		prog.Close()
		return nil, err
	}
	offs := []uint64{base + entry}
	for _, r := range rets {
		offs = append(offs, base+r)
	}
	l, err := ex.UprobeMulti(nil, prog, &link.UprobeMultiOptions{Addresses: offs, PID: uint32(pid)})
	if err != nil {
		prog.Close()
		return nil, err
	}
	return func() { l.Close(); prog.Close() }, nil
}

func attachAgent(pid int, span bool) (func(), error) {
	specs, err := probes.Parse([]byte(fmt.Sprintf(`
probes:
  - symbol: main.Noop
    span: %v
    attributes:
      - {key: n, from: arg0, type: int}
      - {key: s, from: arg1, type: string}
`, span)))
	if err != nil {
		return nil, err
	}
	s, err := agent.Attach(agent.Config{ImageConfig: agent.ImageConfig{Specs: specs}, SessionConfig: agent.SessionConfig{PID: pid, Processor: sdktrace.NewBatchSpanProcessor(discard{})}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	return func() {
		cancel()
		<-done
		st := s.Stats()
		if st.Kernel.RingbufFull > 0 {
			fmt.Fprintf(os.Stderr, "warning: %d events lost to a full ring buffer\n", st.Kernel.RingbufFull)
		}
		s.Close()
		time.Sleep(10 * time.Millisecond)
	}, nil
}

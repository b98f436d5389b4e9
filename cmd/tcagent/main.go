// Command tcagent traces functions inside running Go programs with eBPF
// uprobes and exports them as OpenTelemetry spans.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/exporter"
	tcprom "github.com/tcagent/tcagent/exporter/prometheus"
	"github.com/tcagent/tcagent/internal/holds"
	"github.com/tcagent/tcagent/lifecycle"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

func main() {
	stopProfiles, err := startProfiles()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcagent: %s\n", err)
		os.Exit(1)
	}
	err = newRoot(os.Stdout, os.Stderr).Execute()
	stopProfiles()
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec)) // the traced program's own status: nothing to say
		}
		fmt.Fprintf(os.Stderr, "tcagent: %s\n", oneLine(err))
		os.Exit(1)
	}
}

// exitCode makes tcagent exit with a traced program's status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// oneLine puts an error on the one line tcagent prints: its lines (a
// joined error's, a library's or a tool's multi-line message), trimmed,
// without the blank ones, joined with "; ", or with a space after a line
// that ends in a colon (the heading of what follows). It is the only place
// a message is squeezed: the packages return errors as they are.
func oneLine(err error) string {
	var b strings.Builder
	for line := range strings.Lines(err.Error()) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
	}
	return b.String()
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "tcagent",
		Short:         "Trace functions inside running Go programs as OpenTelemetry spans",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(attachCmd(stdout, stderr), runCmd(stdout, stderr), daemonCmd(stdout, stderr), inspectCmd(stdout), versionCmd(stdout))
	return root
}

func versionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tcagent's version",
		Args:  noArgs(""),
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "tcagent %s\n", agent.Version)
			return err
		},
	}
}

type traceFlags struct {
	probes       string
	builtin      string
	sqlText      string
	exporter     string
	output       string
	serviceName  string
	metricsAddr  string
	otlpEndpoint string
	otlpProtocol string
	sampler      string
	samplerArg   string
	propagate    bool
	limits       lifecycle.Limits
	// lockDir holds the marks of what agents trace (see agent.LockProcess).
	lockDir string
	// shutdownTimeout bounds the whole shutdown, from the signal (or the
	// targets' exit) to exit.
	shutdownTimeout time.Duration
	cmd             *cobra.Command // to tell a flag given from its default
}

func (f *traceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.probes, "probes", "", "custom probes (YAML)")
	cmd.Flags().StringVar(&f.builtin, "builtin", "", "built-in probe sets, comma-separated ("+strings.Join(builtin.Sets, ",")+"); default: all that apply; none turns them off")
	cmd.Flags().StringVar(&f.serviceName, "service-name", "", "service.name (default: OTEL_SERVICE_NAME, else the executable's base name)")
	cmd.Flags().StringVar(&f.sqlText, "sql-query-text", "sanitized", "what db.query.text holds: sanitized (literals replaced by ?), full or none")
	cmd.Flags().StringVar(&f.exporter, "exporter", "", "otlp, jsonl or stdout (default: otlp when OTEL_EXPORTER_OTLP_ENDPOINT is set, else stdout)")
	cmd.Flags().StringVar(&f.output, "output", "", "with the jsonl and stdout exporters, write spans to FILE, not stdout (see the README for run)")
	cmd.Flags().StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:9464", "Prometheus endpoint (/metrics, /healthz, /readyz); empty disables it")
	cmd.Flags().StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "OTLP endpoint URL, e.g. http://localhost:4318 (overrides OTEL_EXPORTER_OTLP_ENDPOINT)")
	cmd.Flags().StringVar(&f.otlpProtocol, "otlp-protocol", "", "grpc or http/protobuf (overrides OTEL_EXPORTER_OTLP_PROTOCOL)")
	cmd.Flags().StringVar(&f.sampler, "sampler", "", "sampler, named as OTEL_TRACES_SAMPLER names them (overrides it)")
	cmd.Flags().StringVar(&f.samplerArg, "sampler-arg", "", "the sampler's ratio (overrides OTEL_TRACES_SAMPLER_ARG)")
	cmd.Flags().BoolVar(&f.propagate, "propagate", false, "carry each HTTP/1 client span's traceparent out in its request, added at the socket (see the README)")
	cmd.Flags().DurationVar(&f.limits.MaxSpanAge, "max-span-age", 10*time.Minute, "end spans open longer than this, marked tcagent.end_reason=max_age")
	cmd.Flags().IntVar(&f.limits.MaxOpenCalls, "max-open-calls", 100_000, "most traced calls held open; more are dropped and counted")
	cmd.Flags().IntVar(&f.limits.MaxGoroutines, "max-goroutines", 100_000, "most goroutines the agent holds state for; more are not tracked, and counted")
	cmd.Flags().IntVar(&f.limits.MaxPending, "max-pending", 100_000, "most async calls waiting to settle; more end at return, counted")
	cmd.Flags().StringVar(&f.lockDir, "lock-dir", holds.DefaultDir, "where agents mark the processes (and, with --propagate, the cgroups) they trace, so that a second agent refuses them; agents see each other's marks only when they share it")
	cmd.Flags().DurationVar(&f.shutdownTimeout, "shutdown-timeout", 5*time.Second, "bound on the whole shutdown (detach, end open spans, flush, export); spans not exported by then are given up and counted in the last log line")
	f.cmd = cmd
}

// pipeline is what spans go through once they end, and the metrics.
type pipeline struct {
	processor   sdktrace.SpanProcessor
	metrics     *tcprom.Metrics
	metricsAddr string // where the endpoint listens, "" when disabled
	sampler     sdktrace.Sampler
	rootRatio   float64         // the share of new traces the sampler samples
	propagator  *bpf.Propagator // --propagate's socket side, nil without it
	output      *spanOutput     // where the jsonl and stdout exporters write
	// unholdCgroup gives back --propagate's mark on its cgroup.
	unholdCgroup func()
	batcher      *exporter.Batcher // nil for the tree
	lockDir      string
	log          *slog.Logger
	// shutdownTimeout bounds finish, counted from shutdownAt (the signal)
	// when it is set, else from finish's call.
	shutdownTimeout time.Duration
	shutdownAt      atomic.Pointer[time.Time]
	stop            context.CancelFunc
}

// propagate loads --propagate's socket programs on the cgroup that holds
// every process in pids: their nearest common ancestor.
func (pl *pipeline) propagate(pids []int, log *slog.Logger) error {
	var common string
	for i, pid := range pids {
		cg, err := bpf.CgroupOf(pid)
		if err != nil {
			return fmt.Errorf("--propagate: %w", err)
		}
		if i == 0 {
			common = cg
			continue
		}
		for common != "/" && cg != common && !strings.HasPrefix(cg, common+"/") {
			common = filepath.Dir(common)
		}
	}
	return pl.propagateAt(common, log)
}

// propagateAt loads --propagate's socket programs on the cgroup v2
// directory cgroup: they see the sockets of every process beneath it.
func (pl *pipeline) propagateAt(common string, log *slog.Logger) error {
	// Another agent's socket programs on these sockets would take the
	// requests of one of the two: refused, never silently broken.
	unhold, err := bpf.HoldCgroup(pl.lockDir, common)
	if err != nil {
		return fmt.Errorf("--propagate: %w", err)
	}
	p, err := bpf.LoadPropagator(common)
	if err != nil {
		unhold()
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("--propagate: insufficient privilege to load socket programs: run as root (or add CAP_NET_ADMIN): %w", err)
		}
		return fmt.Errorf("--propagate: %w", err)
	}
	pl.propagator, pl.unholdCgroup = p, unhold
	pl.metrics.SetSocket(socketStats(p))
	log.Info("propagating trace context", "cgroup", common)
	return nil
}

// shared keeps one process's Session from shutting down the processor that
// every traced process's spans go through: its Shutdown does nothing, as
// the spans it ended are queued already; finish drains the processor once,
// within the shutdown's deadline.
type shared struct{ sdktrace.SpanProcessor }

func (s shared) Shutdown(context.Context) error { return nil }

// setup builds the exporter, the metrics endpoint and the sampler.
func (f *traceFlags) setup(stdout io.Writer, log *slog.Logger) (*pipeline, error) {
	kind := f.exporter
	if kind == "" {
		kind = "stdout"
		if f.otlpEndpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			kind = "otlp"
		}
	}
	if err := f.checkLimits(); err != nil {
		return nil, err
	}
	if f.shutdownTimeout <= 0 {
		return nil, fmt.Errorf("--shutdown-timeout %v: want a positive duration", f.shutdownTimeout)
	}
	sampler, ratio, err := f.traceSampler()
	if err != nil {
		return nil, err
	}
	out, err := f.openOutput(kind, stdout)
	if err != nil {
		return nil, err
	}
	pl := &pipeline{metrics: tcprom.New(0), sampler: sampler, rootRatio: ratio, output: out, lockDir: f.lockDir, log: log,
		shutdownTimeout: f.shutdownTimeout}
	// Marks left by agents that were killed: their processes are gone.
	agent.SweepLocks(f.lockDir)
	ctx, cancel := context.WithCancel(context.Background())
	stop := func() { cancel(); out.close() }
	pl.stop = stop
	onError := func(err error) { log.Warn("span export failed", "error", err) }
	switch kind {
	case "stdout":
		pl.processor = exporter.NewTree(out.w)
	case "jsonl":
		b := exporter.NewBatcher(exporter.NewJSONL(out.w), exporter.BatchOptions{Interval: 200 * time.Millisecond}, onError)
		pl.metrics.SetExports(exportStats(b))
		pl.processor, pl.batcher = b, b
	case "otlp":
		exp, err := exporter.NewOTLP(ctx, exporter.OTLPOptions{Endpoint: f.otlpEndpoint, Protocol: f.otlpProtocol})
		if err != nil {
			stop()
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		b := exporter.NewBatcher(exp, exporter.BatchOptions{}, onError)
		pl.metrics.SetExports(exportStats(b))
		pl.processor, pl.batcher = b, b
	default:
		stop()
		return nil, fmt.Errorf("--exporter %q: want otlp, jsonl or stdout", kind)
	}
	if f.metricsAddr != "" {
		addr, err := pl.serveMetrics(ctx, f.metricsAddr, f.cmd != nil && f.cmd.Flags().Changed("metrics-addr"))
		if err != nil {
			stop()
			return nil, err
		}
		pl.metricsAddr = addr
	}
	return pl, nil
}

// serveMetrics starts the endpoint. Tracing does not depend on it: when the
// default address is taken (another agent on the host, say), it says so
// once and serves on a port the kernel picks, or on none; only an address
// the user gave that fails is fatal.
func (pl *pipeline) serveMetrics(ctx context.Context, addr string, explicit bool) (string, error) {
	a, err := pl.metrics.Serve(ctx, addr)
	if err == nil {
		return a.String(), nil
	}
	if explicit {
		return "", fmt.Errorf("--metrics-addr %s: %w (give another address, or --metrics-addr '' for none)", addr, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	if a, err2 := pl.metrics.Serve(ctx, net.JoinHostPort(host, "0")); err2 == nil {
		pl.log.Warn("default metrics address unavailable: metrics served on another port (choose one with --metrics-addr)", "wanted", addr, "error", err, "metrics", a.String())
		return a.String(), nil
	}
	pl.log.Warn("default metrics address unavailable: tracing goes on without a metrics endpoint (choose one with --metrics-addr)", "wanted", addr, "error", err)
	return "", nil
}

// config returns the agent configuration for the pipeline.
func (pl *pipeline) config(specs []probes.Spec, f *traceFlags, log *slog.Logger) agent.Config {
	return agent.Config{
		ImageConfig: agent.ImageConfig{Specs: specs, Builtin: f.builtinSets(), BuiltinOptions: builtin.Options{SQLQueryText: f.sqlText},
			Logger: log, Propagator: pl.propagator, RootSampleRatio: &pl.rootRatio},
		SessionConfig: agent.SessionConfig{Processor: shared{pl.processor}, ServiceName: f.serviceName,
			Sampler: pl.sampler, SpanProcessors: []sdktrace.SpanProcessor{pl.metrics.SpanProcessor()}, Limits: f.limits},
		LockDir: f.lockDir}
}

// builtinSets parses --builtin: nil for all, empty for none.
func (f *traceFlags) builtinSets() []string {
	switch f.builtin {
	case "":
		return nil
	case "none":
		return []string{}
	}
	return strings.Split(f.builtin, ",")
}

// specs loads --probes, if given.
func (f *traceFlags) specs() ([]probes.Spec, error) {
	if f.probes == "" {
		if f.builtin == "none" {
			return nil, errors.New("nothing to trace: give --probes, or leave built-in probe sets on")
		}
		return nil, nil
	}
	return probes.Load(f.probes)
}

// shutdownFrom starts the shutdown's deadline when ctx is done (the
// signal), rather than when finish is called.
func (pl *pipeline) shutdownFrom(ctx context.Context) {
	context.AfterFunc(ctx, func() {
		now := time.Now()
		pl.shutdownAt.CompareAndSwap(nil, &now)
	})
}

// finish closes the sessions (their uprobes are detached first, whatever
// the exporter does), exports what is left within the shutdown deadline,
// and stops the socket programs and the endpoint. What could not be
// exported by the deadline is given up, and said in the last log line.
func (pl *pipeline) finish(sessions ...*agent.Session) error {
	defer pl.stop()
	start := time.Now()
	if at := pl.shutdownAt.Load(); at != nil {
		start = *at
	}
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(pl.shutdownTimeout))
	defer cancel()
	var errs []error
	for _, s := range sessions {
		errs = append(errs, s.Close())
	}
	if err := pl.processor.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		errs = append(errs, err)
	}
	errs = append(errs, pl.output.close())
	if pl.propagator != nil {
		errs = append(errs, pl.propagator.Close())
		pl.unholdCgroup()
	}
	if b := pl.batcher; b != nil && b.Stats() != (exporter.BatchStats{}) {
		st := b.Stats()
		args := []any{"exported", st.Exported, "abandoned_at_shutdown", st.Abandoned, "dropped_queue_full", st.Dropped,
			"failed", st.Failed, "shutdown_timeout", pl.shutdownTimeout, "took", time.Since(start).Round(time.Millisecond)}
		if st.Abandoned > 0 {
			pl.log.Warn("spans not exported by the shutdown deadline were given up", args...)
		} else {
			pl.log.Info("spans flushed", args...)
		}
	}
	return errors.Join(errs...)
}

func attachCmd(stdout, stderr io.Writer) *cobra.Command {
	var flags traceFlags
	var pids []int
	cmd := &cobra.Command{
		Use:   "attach --pid PID [--pid PID...] [--probes FILE]",
		Short: "Trace running processes until SIGINT/SIGTERM or their exit",
		Args:  noArgs("give the processes as --pid PID[,PID...]"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(pids) == 0 {
				return errors.New("attach: --pid is required")
			}
			if err := checkPIDs(pids); err != nil {
				return err
			}
			specs, err := flags.specs()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(stderr, nil))
			pl, err := flags.setup(stdout, log)
			if err != nil {
				return err
			}
			pl.shutdownFrom(ctx)
			if flags.propagate {
				if err := pl.propagate(pids, log); err != nil {
					pl.finish()
					return err
				}
			}
			// Every process is attached before any is followed: a bad pid
			// detaches those attached before it and ends with its error.
			var sessions []*agent.Session
			for _, pid := range pids {
				cfg := pl.config(specs, &flags, log)
				cfg.PID = pid
				s, err := agent.Attach(cfg)
				if err != nil {
					pl.finish(sessions...)
					return notGoError(pidProgram(pid), err)
				}
				sessions = append(sessions, s)
			}
			pl.metrics.SetKernelMemory(kernelMemory(sessions...))
			errs := make(chan error, len(sessions))
			for _, s := range sessions {
				logAttached(log, s, pl.metricsAddr)
				pl.metrics.AddSession(s)
				go func() { errs <- s.Run(ctx) }()
			}
			var runErr error
			for range sessions {
				runErr = errors.Join(runErr, <-errs)
			}
			if err := pl.finish(sessions...); err != nil && runErr == nil {
				log.Warn("flushing spans", "error", err)
			}
			return runErr
		},
	}
	cmd.Flags().IntSliceVar(&pids, "pid", nil, "process to trace; repeat it (or give a comma-separated list) for several, traced by one agent")
	flags.register(cmd)
	return cmd
}

func runCmd(stdout, stderr io.Writer) *cobra.Command {
	var flags traceFlags
	cmd := &cobra.Command{
		Use:   "run [flags] -- PROGRAM [ARGS...]",
		Short: "Start a program and trace it from its first call",
		Long: "run starts PROGRAM stopped at its first instruction, attaches every probe, then lets it\n" +
			"run, so that calls from main onwards are traced. It forwards SIGINT and SIGTERM to the\n" +
			"program and exits with the program's exit status.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("run: give the program to start: tcagent run [flags] -- PROGRAM [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			specs, err := flags.specs()
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(stderr, nil))
			pl, err := flags.setup(stdout, log)
			if err != nil {
				return err
			}
			s, prog, err := startTraced(args, pl, &flags, specs, log)
			if err != nil {
				pl.finish()
				return err
			}
			pl.metrics.AddSession(s)
			pl.metrics.SetKernelMemory(kernelMemory(s))
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sigs)
			go func() {
				for sig := range sigs {
					prog.Process.Signal(sig)
				}
			}()
			runErr := s.Run(context.Background()) // until the program exits
			if err := pl.finish(s); err != nil {
				log.Warn("flushing spans", "error", err)
			}
			waitErr := prog.Wait()
			if runErr != nil {
				return runErr
			}
			var ee *exec.ExitError
			if errors.As(waitErr, &ee) {
				if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
					return exitCode(128 + int(st.Signal()))
				}
				return exitCode(ee.ExitCode())
			}
			return waitErr
		},
	}
	flags.register(cmd)
	return cmd
}

// startTraced starts args stopped at exec (under ptrace), attaches, and lets
// the program go. On failure the program is killed: it never runs untraced.
func startTraced(args []string, pl *pipeline, flags *traceFlags, specs []probes.Spec, log *slog.Logger) (*agent.Session, *exec.Cmd, error) {
	// ptrace requests must come from the thread that started the tracee.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prog := exec.Command(args[0], args[1:]...)
	prog.Stdin, prog.Stdout, prog.Stderr = os.Stdin, os.Stdout, os.Stderr
	if pl.output.onStdout {
		prog.Stdout = os.Stderr // spans and the program's output never share a stream
	}
	prog.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := prog.Start(); err != nil {
		return nil, nil, startError(args[0], err)
	}
	pid := prog.Process.Pid
	fail := func(err error) (*agent.Session, *exec.Cmd, error) {
		prog.Process.Kill()
		syscall.PtraceDetach(pid)
		prog.Wait()
		return nil, nil, err
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return fail(fmt.Errorf("run %s: wait for exec: %w", args[0], err))
	}
	if !ws.Stopped() {
		return fail(fmt.Errorf("run %s: the program did not stop at exec (%v)", args[0], ws))
	}
	if flags.propagate {
		if err := pl.propagate([]int{pid}, log); err != nil {
			return fail(err)
		}
	}
	cfg := pl.config(specs, flags, log)
	cfg.PID = pid
	s, err := agent.Attach(cfg)
	if err != nil {
		return fail(notGoError("run "+args[0], err))
	}
	logAttached(log, s, pl.metricsAddr)
	if err := syscall.PtraceDetach(pid); err != nil {
		s.Close()
		return fail(fmt.Errorf("run %s: release the program: %w", args[0], err))
	}
	return s, prog, nil
}

func logAttached(log *slog.Logger, s *agent.Session, metricsAddr string) {
	st := s.Snapshot()
	log.Info("attached", "pid", st.PID, "service", st.Service, "probes", st.ProbesAttached, "uprobes", st.Uprobes,
		"ret_fallbacks", st.RetFallbacks, "mode", s.AttachMode(), "go", s.Binary().GoVersion, "metrics", metricsAddr)
}

func inspectCmd(stdout io.Writer) *cobra.Command {
	var pid int
	var symbol string
	cmd := &cobra.Command{
		Use:   "inspect (--pid PID | BINARY)",
		Short: "Show a Go binary's version, modules and functions",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("inspect: give one BINARY, or --pid PID (got %d arguments)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			switch {
			case pid != 0 && len(args) == 0:
				path = fmt.Sprintf("/proc/%d/exe", pid)
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
					return fmt.Errorf("no such process: %d", pid)
				}
			case pid == 0 && len(args) == 1:
				path = args[0]
			default:
				return errors.New("inspect: give either --pid PID or a BINARY")
			}
			b, err := probes.Open(path)
			if err != nil {
				return err
			}
			defer b.Close()
			return inspect(stdout, b, symbol)
		},
	}
	cmd.Flags().IntVar(&pid, "pid", 0, "process whose executable to inspect")
	cmd.Flags().StringVar(&symbol, "symbol", "", "list functions matching PATTERN: a substring of the qualified name, or a glob of the whole name when it has ? or a * that is not a pointer's")
	return cmd
}

func inspect(w io.Writer, b *probes.Binary, symbol string) error {
	fmt.Fprintf(w, "binary:     %s\n", b.Path)
	fmt.Fprintf(w, "arch:       %s\n", b.Arch)
	fmt.Fprintf(w, "go:         %s\n", b.GoVersion)
	fmt.Fprintf(w, "main:       %s %s\n", b.Main.Path, b.Main.Version)
	fmt.Fprintf(w, "stripped:   %v\n", b.Stripped)
	fmt.Fprintf(w, "dwarf:      %v\n", b.HasDWARF)
	fmt.Fprintf(w, "pie:        %v\n", b.PIE)
	fmt.Fprintf(w, "functions:  %d\n", b.Functions())
	if rt, err := b.Runtime(); err != nil {
		fmt.Fprintf(w, "runtime:    unsupported: %v\n", err)
	} else {
		fmt.Fprintf(w, "runtime:    g.goid at %d, g.stack.hi at %d (from %s)\n", rt.GoidOffset, rt.StackHiOffset, rt.Source)
	}
	if rt, err := b.Runtime(); err == nil {
		_, reports, err := builtin.Resolve(b, nil, builtin.Options{}, rt, 0)
		if err != nil {
			return err
		}
		for _, r := range reports {
			if !r.Applied {
				fmt.Fprintf(w, "builtin %s: skipped: %s\n", r.Set, r.Reason)
				continue
			}
			fmt.Fprintf(w, "builtin %s: %s\n", r.Set, strings.Join(r.Probes, ", "))
			if r.Reason != "" {
				fmt.Fprintf(w, "builtin %s: in part: %s\n", r.Set, r.Reason)
			}
			var fields []string
			for f := range r.Offsets {
				fields = append(fields, f)
			}
			sort.Strings(fields)
			for _, f := range fields {
				fmt.Fprintf(w, "  offset %s from %s\n", f, r.Offsets[f])
			}
		}
	}
	fmt.Fprintf(w, "modules:    %d\n", len(b.Modules))
	for _, m := range b.Modules {
		fmt.Fprintf(w, "  %s %s\n", m.Path, m.Version)
	}
	if symbol == "" {
		return nil
	}
	matches := b.Match(symbol)
	fmt.Fprintf(w, "symbols matching %q: %d\n", symbol, len(matches))
	for _, name := range matches {
		fn, _ := b.Func(name)
		line := fmt.Sprintf("  %s  %#x", name, fn.Entry)
		if code, err := b.Code(fn); err == nil {
			if pl, err := probes.Place(b.Arch, code); err == nil {
				line += fmt.Sprintf("  entry+%d rets=%d stackcheck=%v", pl.Entry, len(pl.Returns), pl.StackCheck)
				if pl.EntryOnCheck {
					line += " (entry on the check's branch)"
				}
			} else {
				line += "  (" + err.Error() + ")"
			}
		}
		if sig, err := b.SignatureFromDWARF(name); err == nil && sig != nil {
			line += "  " + sig.String()
			if sig.ResultsUnknown {
				line += "  results not in DWARF"
			}
		}
		if probes.IsShapeInstantiation(name) {
			line += "  generic: a shape instantiation (its hidden dictionary is not numbered)"
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

// Command tcagent traces functions inside running Go programs with eBPF
// uprobes and exports them as OpenTelemetry spans.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/exporter"
	"github.com/tcagent/tcagent/probes"
)

func main() {
	if err := newRoot(os.Stdout, os.Stderr).Execute(); err != nil {
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

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "tcagent",
		Short:         "Trace functions inside running Go programs as OpenTelemetry spans",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(attachCmd(stdout, stderr), runCmd(stdout, stderr), inspectCmd(stdout), versionCmd(stdout))
	return root
}

func versionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tcagent's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "tcagent %s\n", agent.Version)
			return err
		},
	}
}

type traceFlags struct {
	probes      string
	exporter    string
	serviceName string
}

func (f *traceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.probes, "probes", "", "custom probes (YAML)")
	cmd.Flags().StringVar(&f.exporter, "exporter", "", "otlp, jsonl or stdout (default: otlp when OTEL_EXPORTER_OTLP_ENDPOINT is set, else stdout)")
	cmd.Flags().StringVar(&f.serviceName, "service-name", "", "service.name (default: OTEL_SERVICE_NAME, else the executable's base name)")
}

// processor builds the span processor for the chosen exporter.
func (f *traceFlags) processor(ctx context.Context, stdout io.Writer) (sdktrace.SpanProcessor, error) {
	kind := f.exporter
	if kind == "" {
		kind = "stdout"
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			kind = "otlp"
		}
	}
	switch kind {
	case "stdout":
		return exporter.NewTree(stdout), nil
	case "jsonl":
		return sdktrace.NewBatchSpanProcessor(exporter.NewJSONL(stdout), sdktrace.WithBatchTimeout(200*time.Millisecond)), nil
	case "otlp":
		proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		var exp sdktrace.SpanExporter
		var err error
		switch proto {
		case "", "http/protobuf":
			exp, err = otlptracehttp.New(ctx)
		case "grpc":
			exp, err = otlptracegrpc.New(ctx)
		default:
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", proto)
		}
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		return sdktrace.NewBatchSpanProcessor(exp), nil
	}
	return nil, fmt.Errorf("--exporter %q: want otlp, jsonl or stdout", kind)
}

func attachCmd(stdout, stderr io.Writer) *cobra.Command {
	var flags traceFlags
	var pid int
	cmd := &cobra.Command{
		Use:   "attach --pid PID --probes FILE",
		Short: "Trace a running process until SIGINT/SIGTERM or its exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pid == 0 {
				return errors.New("attach: --pid is required")
			}
			if flags.probes == "" {
				return errors.New("attach: --probes is required (built-in probe sets are not available yet)")
			}
			specs, err := probes.Load(flags.probes)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			proc, err := flags.processor(ctx, stdout)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(stderr, nil))
			s, err := agent.Attach(agent.Config{PID: pid, Specs: specs, Processor: proc, ServiceName: flags.serviceName, Logger: log})
			if err != nil {
				proc.Shutdown(context.Background())
				return err
			}
			offsets := 0
			for _, p := range s.Probes() {
				offsets += 1 + len(p.Placement.Returns)
			}
			log.Info("attached", "pid", pid, "probes", len(s.Probes()), "uprobes", offsets, "mode", s.AttachMode(), "go", s.Binary().GoVersion)
			runErr := s.Run(ctx)
			if err := s.Close(); err != nil && runErr == nil {
				runErr = fmt.Errorf("flush spans: %w", err)
			}
			return runErr
		},
	}
	cmd.Flags().IntVar(&pid, "pid", 0, "process to trace")
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
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if flags.probes == "" {
				return errors.New("run: --probes is required (built-in probe sets are not available yet)")
			}
			specs, err := probes.Load(flags.probes)
			if err != nil {
				return err
			}
			proc, err := flags.processor(context.Background(), stdout)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(stderr, nil))
			s, prog, err := startTraced(args, agent.Config{Specs: specs, Processor: proc, ServiceName: flags.serviceName, Logger: log})
			if err != nil {
				proc.Shutdown(context.Background())
				return err
			}
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sigs)
			go func() {
				for sig := range sigs {
					prog.Process.Signal(sig)
				}
			}()
			runErr := s.Run(context.Background()) // until the program exits
			if err := s.Close(); err != nil && runErr == nil {
				runErr = fmt.Errorf("flush spans: %w", err)
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
func startTraced(args []string, cfg agent.Config) (*agent.Session, *exec.Cmd, error) {
	// ptrace requests must come from the thread that started the tracee.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prog := exec.Command(args[0], args[1:]...)
	prog.Stdin, prog.Stdout, prog.Stderr = os.Stdin, os.Stdout, os.Stderr
	prog.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := prog.Start(); err != nil {
		return nil, nil, fmt.Errorf("run %s: %w", args[0], err)
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
	cfg.PID = pid
	s, err := agent.Attach(cfg)
	if err != nil {
		return fail(err)
	}
	offsets := 0
	for _, p := range s.Probes() {
		offsets += 1 + len(p.Placement.Returns)
	}
	cfg.Logger.Info("attached", "pid", pid, "probes", len(s.Probes()), "uprobes", offsets, "mode", s.AttachMode(), "go", s.Binary().GoVersion)
	if err := syscall.PtraceDetach(pid); err != nil {
		s.Close()
		return fail(fmt.Errorf("run %s: release the program: %w", args[0], err))
	}
	return s, prog, nil
}

func inspectCmd(stdout io.Writer) *cobra.Command {
	var pid int
	var symbol string
	cmd := &cobra.Command{
		Use:   "inspect (--pid PID | BINARY)",
		Short: "Show a Go binary's version, modules and functions",
		Args:  cobra.MaximumNArgs(1),
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
	cmd.Flags().StringVar(&symbol, "symbol", "", "list functions matching PATTERN (a glob, or a substring)")
	return cmd
}

func inspect(w io.Writer, b *probes.Binary, symbol string) error {
	fmt.Fprintf(w, "binary:     %s\n", b.Path)
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
			if pl, err := probes.Place(code); err == nil {
				line += fmt.Sprintf("  entry+%d rets=%d stackcheck=%v", pl.Entry, len(pl.Returns), pl.StackCheck)
			} else {
				line += "  (" + err.Error() + ")"
			}
		}
		if sig, err := b.SignatureFromDWARF(name); err == nil && sig != nil {
			line += "  " + describeSig(sig)
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

func describeSig(sig *probes.Signature) string {
	part := func(ps []probes.Param) string {
		var s []string
		for _, p := range ps {
			s = append(s, p.Name+" "+p.Type)
		}
		return strings.Join(s, ", ")
	}
	return "func(" + part(sig.Params) + ") (" + part(sig.Results) + ")"
}

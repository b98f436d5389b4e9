package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/daemon"
	"github.com/tcagent/tcagent/probes"
)

func daemonCmd(stdout, stderr io.Writer) *cobra.Command {
	var flags traceFlags
	var sizes kernelSizes
	var config, node, cgroupRoot string
	cmd := &cobra.Command{
		Use:   "daemon --config FILE",
		Short: "Trace every matching Go process on the host, as they start and until they exit",
		Long: "daemon watches the host's processes (exec and exit, from the kernel) and traces each\n" +
			"Go process that a selector of FILE matches, with that selector's probes, from its\n" +
			"start; processes of one executable share one set of uprobes, and one set of BPF\n" +
			"programs and maps serves them all (sized by the flags below). See the README's\n" +
			"deployment section for the file and for running it on Kubernetes.",
		Args: noArgs("give the file as --config FILE"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return errors.New("daemon: --config is required")
			}
			cfg, err := daemon.LoadConfig(config)
			if err != nil {
				return err
			}
			var specs []probes.Spec
			if flags.probes != "" {
				if specs, err = probes.Load(flags.probes); err != nil {
					return err
				}
			}
			cfg.Defaults(specs, flags.builtinSets(), flags.serviceName)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(stderr, nil))
			var pods daemon.Pods
			if rc, ok, err := daemon.InCluster(); err != nil {
				return err
			} else if ok {
				if node == "" {
					node = os.Getenv("NODE_NAME")
				}
				if pods, err = daemon.NewKubePods(rc, node); err != nil {
					return err
				}
				log.Info("reading pod metadata from the Kubernetes API", "node", node)
			}
			pl, err := flags.setup(stdout, log)
			if err != nil {
				return err
			}
			pl.shutdownFrom(ctx)
			// The socket programs go on the root cgroup: every process.
			if flags.propagate {
				if cgroupRoot == "" {
					if cgroupRoot, err = bpf.CgroupRoot(); err != nil {
						pl.finish()
						return fmt.Errorf("--propagate: %w", err)
					}
				}
				if err := pl.propagateAt(cgroupRoot, log); err != nil {
					pl.finish()
					return err
				}
			}
			base := pl.config(nil, &flags, log)
			if err := sizes.apply(&base.ImageConfig); err != nil {
				pl.finish()
				return err
			}
			d := daemon.New(daemon.Options{Config: cfg, Base: base, Pods: pods, Self: os.Getpid(),
				OnSession: func(s *agent.Session, started bool) {
					if started {
						pl.metrics.AddSession(s)
					} else {
						pl.metrics.RemoveSession(s)
					}
				}})
			pl.metrics.SetDaemon(daemonHealth{d})
			pl.metrics.SetKernelMemory(d.MemoryLocked)
			runErr := d.Run(ctx)
			if err := pl.finish(); err != nil {
				log.Warn("flushing spans", "error", err)
			}
			return runErr
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the selectors: which processes to trace and how (YAML)")
	cmd.Flags().StringVar(&cgroupRoot, "cgroup-root", "", "with --propagate, the host's cgroup v2 mount (default: the first mounted; in a container, mount the host's)")
	cmd.Flags().StringVar(&node, "node-name", "", "in a cluster, the node whose pods to read (default: NODE_NAME)")
	flags.register(cmd)
	sizes.register(cmd)
	return cmd
}

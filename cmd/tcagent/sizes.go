package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/daemon"
)

// kernelSizes are the daemon's flags that size the one set of BPF maps
// serving the whole host: the kernel memory they lock
// (tcagent_bpf_memory_bytes) is charged to the daemon's cgroup.
type kernelSizes struct {
	ringBuffer                       string
	mapEntries, processes, maxProbes uint32
}

func (k *kernelSizes) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.ringBuffer, "ring-buffer-size", fmt.Sprintf("%dMiB", daemon.DefaultRingBufferSize>>20), "the one ring buffer every traced process's events go through: a power of two, in bytes or with KiB/MiB")
	cmd.Flags().Uint32Var(&k.mapEntries, "map-entries", daemon.DefaultMapEntries, "entries of the kernel's per-goroutine maps (open calls, lost events; trace contexts with --propagate), for every process together: about 110 bytes each")
	cmd.Flags().Uint32Var(&k.processes, "max-processes", daemon.DefaultMaxProcesses, fmt.Sprintf("most processes traced at once (1 to %d); more wait", bpf.MaxSlots-1))
	cmd.Flags().Uint32Var(&k.maxProbes, "max-probes", daemon.DefaultMaxProbes, fmt.Sprintf("probe ids of every executable traced together (each takes its probes and 2; at most %d): about 450 bytes each", bpf.MaxProbeIDs))
}

// apply checks the sizes and sets them in cfg.
func (k *kernelSizes) apply(cfg *agent.ImageConfig) error {
	ring, err := parseSize(k.ringBuffer)
	if err != nil {
		return fmt.Errorf("--ring-buffer-size: %w", err)
	}
	switch {
	case ring < 4096 || ring&(ring-1) != 0 || ring > 1<<30:
		return fmt.Errorf("--ring-buffer-size %s: a power of two from 4KiB to 1GiB", k.ringBuffer)
	case k.mapEntries < 1024:
		return fmt.Errorf("--map-entries %d: at least 1024", k.mapEntries)
	case k.processes < 1 || k.processes >= bpf.MaxSlots:
		return fmt.Errorf("--max-processes %d: from 1 to %d", k.processes, bpf.MaxSlots-1)
	case k.maxProbes < 64 || k.maxProbes > bpf.MaxProbeIDs:
		return fmt.Errorf("--max-probes %d: from 64 to %d", k.maxProbes, bpf.MaxProbeIDs)
	}
	cfg.RingBufferSize, cfg.MapEntries, cfg.MaxProcesses, cfg.MaxProbes = uint32(ring), k.mapEntries, k.processes, k.maxProbes
	return nil
}

// parseSize reads a byte count: a number, or one followed by KiB, MiB or
// GiB.
func parseSize(s string) (uint64, error) {
	num, mult := s, uint64(1)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with KiB, MiB or GiB)", s)
	}
	return n * mult, nil
}

package main

import (
	"strings"
	"testing"

	"github.com/tcagent/tcagent/agent"
)

// TestKernelSizes: the daemon's size flags reach the node's configuration,
// and a size the kernel would refuse, or a word that is no size, is a
// one-line error naming the flag.
func TestKernelSizes(t *testing.T) {
	k := kernelSizes{ringBuffer: "4MiB", mapEntries: 2048, processes: 100, maxProbes: 1024}
	var cfg agent.ImageConfig
	if err := k.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.RingBufferSize != 4<<20 || cfg.MapEntries != 2048 || cfg.MaxProcesses != 100 || cfg.MaxProbes != 1024 {
		t.Errorf("sizes %+v", cfg)
	}
	for _, c := range []struct {
		k    kernelSizes
		flag string
	}{
		{kernelSizes{ringBuffer: "3MiB", mapEntries: 2048, processes: 1, maxProbes: 64}, "--ring-buffer-size 3MiB"},
		{kernelSizes{ringBuffer: "8 MB", mapEntries: 2048, processes: 1, maxProbes: 64}, "--ring-buffer-size"},
		{kernelSizes{ringBuffer: "65536", mapEntries: 10, processes: 1, maxProbes: 64}, "--map-entries 10"},
		{kernelSizes{ringBuffer: "64KiB", mapEntries: 2048, processes: 1024, maxProbes: 64}, "--max-processes 1024"},
		{kernelSizes{ringBuffer: "1GiB", mapEntries: 2048, processes: 1, maxProbes: 1 << 20}, "--max-probes 1048576"},
	} {
		err := c.k.apply(&agent.ImageConfig{})
		if err == nil || !strings.HasPrefix(err.Error(), c.flag) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line starting %q", c.k, err, c.flag)
		}
	}
}

package main

import (
	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/daemon"
	"github.com/tcagent/tcagent/exporter"
	"github.com/tcagent/tcagent/exporter/prometheus"
)

// The metrics endpoint reads the pipeline's counts through its own small
// types (exporter/prometheus health.go); these translate.

func exportStats(b *exporter.Batcher) func() prometheus.ExportStats {
	return func() prometheus.ExportStats {
		st := b.Stats()
		return prometheus.ExportStats{Exported: st.Exported, Dropped: st.Dropped, Failed: st.Failed, ExportErrors: st.ExportErrors}
	}
}

func socketStats(p *bpf.Propagator) func() (prometheus.SocketStats, error) {
	return func() (prometheus.SocketStats, error) {
		c, err := p.Counters()
		if err != nil {
			return nil, err
		}
		return prometheus.SocketStats{"injected": c.Injected, "not_http1": c.NotHTTP1, "no_room": c.NoRoom}, nil
	}
}

// kernelMemory sums the kernel memory the sessions' BPF maps lock (attach
// loads one set per process).
func kernelMemory(sessions ...*agent.Session) func() (uint64, error) {
	return func() (uint64, error) {
		var sum uint64
		for _, s := range sessions {
			n, err := s.Node().MemoryLocked()
			if err != nil {
				return 0, err
			}
			sum += n
		}
		return sum, nil
	}
}

type daemonHealth struct{ d *daemon.Daemon }

func (h daemonHealth) Ready() bool { return h.d.Ready() }

func (h daemonHealth) Stats() prometheus.DaemonStats {
	st := h.d.Stats()
	return prometheus.DaemonStats{Traced: st.Traced, Waiting: st.Waiting, Images: st.Images,
		DiscoveryLost: st.DiscoveryLost, Unattributed: st.Unattributed, DecodeErrors: st.DecodeErrors, Decisions: st.Decisions,
		Lost: agent.LostReasons(st.Undecided)}
}

package bpf

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// Memlock sums the kernel memory the maps lock (ring buffers included), as
// the kernel accounts it (memlock in /proc/self/fdinfo), each map once
// however many of the given handles name it (the tracer shares the
// propagator's maps).
func Memlock(maps ...*ebpf.Map) (uint64, error) {
	seen := map[uint64]bool{}
	var sum uint64
	for _, m := range maps {
		if m == nil {
			continue
		}
		id, bytes, err := fdinfo(m.FD())
		if err != nil {
			return 0, err
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		sum += bytes
	}
	return sum, nil
}

// fdinfo reads a map's id and locked bytes from its fd's fdinfo.
func fdinfo(fd int) (id, memlock uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return 0, 0, fmt.Errorf("read map memory: %w", err)
	}
	defer f.Close()
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "map_id":
			dst = &id
		case "memlock":
			dst = &memlock
		default:
			continue
		}
		if *dst, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64); err != nil {
			return 0, 0, fmt.Errorf("read map memory: fd %d: %s: %w", fd, k, err)
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read map memory: %w", err)
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("read map memory: fd %d: no map_id and memlock in its fdinfo", fd)
	}
	return id, memlock, nil
}

// Maps returns the tracer's maps, for Memlock.
func (t *Tracer) Maps() []*ebpf.Map {
	m := &t.objs.tracerMaps
	return []*ebpf.Map{m.Calls, m.Conns, m.Counters, m.Creators, m.Events, m.Gtrace, m.Lost, m.Marked, m.Outgoing,
		m.Pending, m.Pids, m.Recipes, m.TpScratch, m.Tuples}
}

// Maps returns the process watch's maps, for Memlock.
func (w *ProcWatch) Maps() []*ebpf.Map {
	return []*ebpf.Map{w.objs.ProcEvents, w.objs.ProcLost}
}

// Maps returns the socket side's maps, for Memlock.
func (p *Propagator) Maps() []*ebpf.Map {
	m := &p.objs.propagatorMaps
	return []*ebpf.Map{m.Conns, m.Pending, m.PropCounters, m.Socks, m.Tuples}
}

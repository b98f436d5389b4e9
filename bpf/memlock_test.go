package bpf

import (
	"os"
	"testing"
)

// TestMemlockFollowsSizes: the memory reported is the kernel's account of
// the maps, so it follows the sizes asked for: a ring buffer 16 times
// larger adds about that many bytes, and a handle named twice counts once.
func TestMemlockFollowsSizes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loads the tracer: needs root")
	}
	measure := func(ring uint32) uint64 {
		tr, err := Load(Options{RingBufferSize: ring, MapEntries: 1024, Slots: 8, Probes: 64})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		n, err := Memlock(append(tr.Maps(), tr.Events())...)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	small, big := measure(64<<10), measure(1<<20)
	if small == 0 || big-small < (1<<20-64<<10) {
		t.Errorf("memlock with a 64 KiB ring buffer %d, with 1 MiB %d: want at least %d more", small, big, 1<<20-64<<10)
	}
}

package agent

import "testing"

// TestIDRanges: ranges never overlap, the ids let go are handed out again
// only once the ids past them were, and find names the range of an id.
func TestIDRanges(t *testing.T) {
	r := idRanges{n: 10}
	alloc := func(size, want uint32) {
		t.Helper()
		lo, ok := r.alloc(size)
		if !ok || lo != want {
			t.Fatalf("alloc(%d) = %d, %v; want %d (used %v)", size, lo, ok, want, r.used)
		}
	}
	alloc(3, 0) // [0,3)
	alloc(3, 3) // [3,6)
	alloc(2, 6) // [6,8)
	r.free(0)
	// [8,10) is free past the last range: taken before [0,3) comes back.
	alloc(2, 8)
	alloc(3, 0)
	if _, ok := r.alloc(1); ok {
		t.Fatalf("alloc(1) in a full set succeeded (used %v)", r.used)
	}
	r.free(3)
	r.free(6)
	alloc(5, 3) // the two freed ranges, adjacent, make one gap
	for id, want := range map[uint32]uint32{0: 0, 2: 0, 3: 3, 7: 3, 8: 8, 9: 8} {
		if lo, ok := r.find(id); !ok || lo != want {
			t.Errorf("find(%d) = %d, %v; want %d", id, lo, ok, want)
		}
	}
	r.free(8)
	if lo, ok := r.find(9); ok {
		t.Errorf("find(9) after its range was freed = %d", lo)
	}
	if _, ok := r.alloc(11); ok {
		t.Error("alloc of more ids than there are succeeded")
	}
	if _, ok := r.alloc(0); ok {
		t.Error("alloc(0) succeeded")
	}
}

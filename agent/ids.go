package agent

import "sort"

// idRanges hands out the probe ids of the node's recipes, [0, n), a range
// per executable. It looks for room past the range it handed out last
// before it wraps around, so that the ids an executable let go are reused
// as late as they can be: records of its probes may still wait in the
// ring buffer when it closes. Not safe for concurrent use.
type idRanges struct {
	n    uint32
	used []idRange // sorted by lo
	next uint32
}

type idRange struct{ lo, hi uint32 }

// alloc returns the first id of a free range of size ids; false when no
// gap is that large.
func (r *idRanges) alloc(size uint32) (uint32, bool) {
	if size == 0 || size > r.n {
		return 0, false
	}
	take := func(lo uint32) uint32 {
		i := sort.Search(len(r.used), func(i int) bool { return r.used[i].lo > lo })
		r.used = append(r.used, idRange{})
		copy(r.used[i+1:], r.used[i:])
		r.used[i] = idRange{lo, lo + size}
		r.next = (lo + size) % r.n
		return lo
	}
	// The gaps in order, the one holding next split there: first from
	// next on, then from 0.
	for pass := 0; pass < 2; pass++ {
		lo := uint32(0)
		for i := 0; i <= len(r.used); i++ {
			hi := r.n
			if i < len(r.used) {
				hi = r.used[i].lo
			}
			start := lo
			if pass == 0 {
				start = max(lo, r.next)
			}
			if start < hi && hi-start >= size {
				return take(start), true
			}
			if i < len(r.used) {
				lo = r.used[i].hi
			}
		}
	}
	return 0, false
}

// free lets go of the range that starts at lo.
func (r *idRanges) free(lo uint32) {
	for i, u := range r.used {
		if u.lo == lo {
			r.used = append(r.used[:i], r.used[i+1:]...)
			return
		}
	}
}

// find returns the first id of the range that holds id.
func (r *idRanges) find(id uint32) (uint32, bool) {
	i := sort.Search(len(r.used), func(i int) bool { return r.used[i].hi > id })
	if i < len(r.used) && r.used[i].lo <= id {
		return r.used[i].lo, true
	}
	return 0, false
}

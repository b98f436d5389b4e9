package probes

import (
	"errors"
	"testing"
)

// callRel32 encodes CALL rel32 at address at to target.
func callRel32(at, target uint64) []byte {
	r := uint32(int64(target) - int64(at+5))
	return []byte{0xe8, byte(r), byte(r >> 8), byte(r >> 16), byte(r >> 24)}
}

func TestCallAfterFindsNextCall(t *testing.T) {
	const base, callee, next = 0x1000, 0x5000, 0x6000
	code := append([]byte{0x48, 0x89, 0xc3}, callRel32(base+3, callee)...) // MOVQ AX, BX; CALL callee
	code = append(code, 0x48, 0x89, 0xc3)                                  // MOVQ AX, BX
	code = append(code, callRel32(base+uint64(len(code)), next)...)
	code = append(code, 0xc3)
	off, target, err := CallAfter(code, base, callee)
	if err != nil || off != 11 || target != next {
		t.Fatalf("CallAfter = %#x, %#x, %v; want 0xb, %#x, nil", off, target, err, next)
	}
}

func TestCallAfterRefusesBranch(t *testing.T) {
	const base, callee, next = 0x1000, 0x5000, 0x6000
	code := callRel32(base, callee)
	code = append(code, 0x74, 0x00) // JE +0
	code = append(code, callRel32(base+uint64(len(code)), next)...)
	if _, _, err := CallAfter(code, base, callee); !errors.Is(err, ErrNoCallSite) {
		t.Fatalf("err = %v, want ErrNoCallSite", err)
	}
	if _, _, err := CallAfter([]byte{0x90, 0xc3}, base, callee); !errors.Is(err, ErrNoCallSite) {
		t.Fatalf("pattern-less: err = %v, want ErrNoCallSite", err)
	}
}

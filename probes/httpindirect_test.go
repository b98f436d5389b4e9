package probes

import (
	"strings"
	"testing"
)

func decoded(t *testing.T, code []byte) []inst {
	t.Helper()
	insts, err := disassemble(code)
	if err != nil {
		t.Fatal(err)
	}
	return insts
}

// TestMethodCall: an indirect CALL is a method call through fun[0] only
// when the latest write to its register loads 0x18(R), no call or jump
// between.
func TestMethodCall(t *testing.T) {
	var (
		loadFun0 = []byte{0x48, 0x8b, 0x52, 0x18} // MOVQ 0x18(DX), DX
		loadFun1 = []byte{0x48, 0x8b, 0x52, 0x20} // MOVQ 0x20(DX), DX
		movAXBX  = []byte{0x48, 0x89, 0xc3}       // MOVQ AX, BX
		movAXDX  = []byte{0x48, 0x89, 0xc2}       // MOVQ AX, DX
		cmpDX    = []byte{0x48, 0x85, 0xd2}       // TESTQ DX, DX
		jmp0     = []byte{0xeb, 0x00}             // JMP +0 (lands on the next instruction)
		callDX   = []byte{0xff, 0xd2}             // CALL DX
	)
	cat := func(parts ...[]byte) []byte {
		var c []byte
		for _, p := range parts {
			c = append(c, p...)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		code []byte
		want bool
	}{
		{"fun0", cat(loadFun0, callDX), true},
		{"fun0, other registers written", cat(loadFun0, movAXBX, cmpDX, callDX), true},
		{"fun1", cat(loadFun1, callDX), false},
		{"overwritten", cat(loadFun0, movAXDX, callDX), false},
		{"never loaded", cat(movAXBX, callDX), false},
		{"a call between", cat(loadFun0, callRel32(4, 0x100), callDX), false},
		{"a jump lands between", cat(loadFun0, jmp0, movAXBX, callDX), false},
	} {
		insts := decoded(t, tc.code)
		if got := methodCall(insts, len(insts)-1); got != tc.want {
			t.Errorf("%s: methodCall = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestHandlerOf: a reference to the itab must be a LEAQ into R8 reaching a
// direct CALL of serveHTTP2Conn on a straight-line path that keeps R8.
func TestHandlerOf(t *testing.T) {
	const base, target = 0x1000, 0x5000
	fn := Func{Name: "net/http.(*Server).serveHTTP2Conn", Entry: target}
	var (
		leaR8   = []byte{0x4c, 0x8d, 0x05, 0, 0, 0, 0} // LEAQ 0(IP), R8
		leaR9   = []byte{0x4c, 0x8d, 0x0d, 0, 0, 0, 0} // LEAQ 0(IP), R9
		xorR10  = []byte{0x45, 0x31, 0xd2}             // XORL R10, R10
		movR8   = []byte{0x49, 0x89, 0xc0}             // MOVQ AX, R8
		jeq     = []byte{0x74, 0x00}                   // JEQ +0
		movsSP  = []byte{0x44, 0x0f, 0x11, 0x3c, 0x24} // MOVUPS X15, 0(SP)
		callFar = callRel32(0, 0x7000)
	)
	for _, tc := range []struct {
		name   string
		parts  [][]byte
		reason string
	}{
		{"passed as h", [][]byte{leaR8, xorR10}, ""},
		{"into R9", [][]byte{leaR9, xorR10}, "not a LEAQ into R8"},
		{"R8 overwritten", [][]byte{leaR8, movR8}, "R8 is overwritten"},
		{"a branch", [][]byte{leaR8, jeq}, "before a CALL"},
		{"another call first", [][]byte{leaR8, callFar}, "before a CALL"},
		{"an unmodelled instruction", [][]byte{leaR8, movsSP}, "R8 is overwritten"},
	} {
		var code []byte
		for _, p := range tc.parts {
			code = append(code, p...)
		}
		code = append(code, callRel32(base+uint64(len(code)), target)...)
		err := handlerOf(codeRef{Func{Name: "net/http.(*conn).serve", Entry: base}, decoded(t, code), 0}, fn)
		if tc.reason == "" && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)) {
			t.Errorf("%s: err = %v, want one with %q", tc.name, err, tc.reason)
		}
	}
	if err := handlerOf(codeRef{Func{Entry: base}, decoded(t, leaR8), 0}, fn); err == nil || !strings.Contains(err.Error(), "no CALL") {
		t.Errorf("no call after: err = %v", err)
	}
}

func TestMayRef(t *testing.T) {
	// At 0x1000: LEAQ 0x10(IP), AX ends at 0x1007, so it addresses 0x1017.
	lea := []byte{0x48, 0x8d, 0x05, 0x10, 0, 0, 0}
	if !mayRef(lea, 0x1000, 0x1017) {
		t.Error("the LEAQ's target not seen")
	}
	// CMPL $1, 0x10(IP): an immediate byte after the displacement; the
	// instruction ends at 0x1007 too, its target 0x1017.
	cmp := []byte{0x83, 0x3d, 0x10, 0, 0, 0, 0x01}
	if !mayRef(cmp, 0x1000, 0x1017) {
		t.Error("the CMPL's target not seen")
	}
	if mayRef(lea, 0x1000, 0x1030) || mayRef(lea[:6], 0x1000, 0x1017) {
		t.Error("a reference seen that is not there")
	}
}

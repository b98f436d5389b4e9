package probes

import (
	"encoding/hex"
	"strings"
	"testing"
)

// feederSelect is the code go1.27.3 makes before sarama v1.61.1's
// per-message select in (*partitionConsumer).responseFeeder, up to its
// CALL runtime.selectgo: the cases at 0x118(SP), the first channel
// loaded from 0x28(CX) (partitionConsumer.messages) into R9.
const feederSelect = "" +
	"488b8c2478010000" + // MOVQ 0x178(SP), CX
	"4c8b9c2488000000" + // MOVQ 0x88(SP), R11
	"31f6" + // XORL SI, SI
	"4088742433" + // MOVB SI, 0x33(SP)
	"488b5168" + // MOVQ 0x68(CX), DX
	"4c8b4928" + // MOVQ 0x28(CX), R9
	"4c899c2460010000" + // MOVQ R11, 0x160(SP)
	"4c8b942490000000" + // MOVQ 0x90(SP), R10
	"4d8b12" + // MOVQ 0(R10), R10
	"4c8d9c2418010000" + // LEAQ 0x118(SP), R11
	"450f113b" + // MOVUPS X15, 0(R11)
	"4889942438010000" + // MOVQ DX, 0x138(SP)
	"4c898c2418010000" + // MOVQ R9, 0x118(SP)
	"488d942460010000" + // LEAQ 0x160(SP), DX
	"4889942420010000" + // MOVQ DX, 0x120(SP)
	"4c89942428010000" + // MOVQ R10, 0x128(SP)
	"488d842418010000" + // LEAQ 0x118(SP), AX
	"488d5c244c" + // LEAQ 0x4c(SP), BX
	"31c9" + // XORL CX, CX
	"bf01000000" + // MOVL $1, DI
	"be02000000" // MOVL $2, SI

func decode(t *testing.T, h string) []inst {
	t.Helper()
	code, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	insts, err := disassemble(code)
	if err != nil {
		t.Fatal(err)
	}
	return insts
}

// TestSendsFrom: the select sending on the channel of field 0x28 is told
// from one sending on another field's, from one whose first case's channel
// is not what was loaded there, and from code cut by a jump.
func TestSendsFrom(t *testing.T) {
	if !sendsFrom(decode(t, feederSelect), 0x28) {
		t.Error("the feeder's select not found sending on the field at 0x28")
	}
	if sendsFrom(decode(t, feederSelect), 0x68) {
		t.Error("a select found sending on the field at 0x68, which holds its third case's channel")
	}
	// The first case's channel from DX (loaded from 0x68) instead of R9.
	other := strings.Replace(feederSelect, "4c898c2418010000", "4889942418010000", 1)
	if sendsFrom(decode(t, other), 0x28) {
		t.Error("a select whose first channel comes from 0x68 found sending on 0x28")
	}
	// A JMP after the load: the load is not on the straight-line path.
	cut := strings.Replace(feederSelect, "4c899c2460010000", "eb00"+"4c899c2460010000", 1)
	if sendsFrom(decode(t, cut), 0x28) {
		t.Error("a load before a jump taken as the select's")
	}
	if sendsFrom(decode(t, "bf01000000"), 0x28) {
		t.Error("code with no cases found sending")
	}
}

package bpf

import (
	"os"
	"testing"
)

// TestForgetPIDMarks: a process's exit (ForgetPID) drops the marks of its
// goroutines (tracer.c's marked), and only its own.
func TestForgetPIDMarks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loads the tracer: needs root")
	}
	tr, err := Load(Options{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	one := uint8(1)
	for _, k := range []tracerGkey{{Goid: 1, Tgid: 100}, {Goid: 7, Tgid: 100}, {Goid: 1, Tgid: 200}} {
		if err := tr.objs.Marked.Put(k, one); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.AdmitPID(100, Admission{Slot: 1, Lo: 0, Hi: 1}); err != nil {
		t.Fatal(err)
	}
	if err := tr.ForgetPID(100); err != nil {
		t.Fatal(err)
	}
	left, err := tr.marks()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != (tracerGkey{Goid: 1, Tgid: 200}) {
		t.Errorf("marks left after pid 100's exit: %+v, want pid 200's goroutine 1 only", left)
	}
}

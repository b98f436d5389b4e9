package agent

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tcagent/tcagent/internal/holds"
)

func TestStartTimeIn(t *testing.T) {
	// A command name with spaces and a parenthesis must not shift fields.
	stat := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 200 18446744073709551615"
	got, err := StartTimeIn(stat)
	if err != nil || got != "987654" {
		t.Fatalf("StartTimeIn = %q, %v; want 987654", got, err)
	}
	if _, err := StartTimeIn("4242 (cut"); err == nil {
		t.Error("a cut line read")
	}
	if n := LockName(4242, "987654"); n != "tcagent-pid-4242-987654.lock" {
		t.Errorf("LockName = %q", n)
	}
}

func TestLockProcessRefusesSecond(t *testing.T) {
	dir := t.TempDir()
	l, err := LockProcess(dir, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockProcess(dir, os.Getpid())
	var held *holds.HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() || !strings.Contains(err.Error(), "already traced by") {
		t.Fatalf("second lock: %v", err)
	}
	l.Release()
	l2, err := LockProcess(dir, os.Getpid())
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.Release()
	if _, err := LockProcess(dir, 1<<30); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("absent pid: %v", err)
	}
}

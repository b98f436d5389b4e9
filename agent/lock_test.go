package agent

import (
	"errors"
	"os"
	"path/filepath"
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

func TestParseLockName(t *testing.T) {
	pid, start, ok := parseLockName(LockName(4242, "987654"))
	if !ok || pid != 4242 || start != "987654" {
		t.Errorf("round trip: %d %q %v", pid, start, ok)
	}
	for _, bad := range []string{"tcagent-pid-x-1.lock", "tcagent-pid-42.lock", "tcagent-pid-42-.lock", "tcagent-cgroup-7.lock", "tcagent-pid-42-1.lck"} {
		if _, _, ok := parseLockName(bad); ok {
			t.Errorf("%s read as a process mark", bad)
		}
	}
}

func TestSweepLocks(t *testing.T) {
	dir := t.TempDir()
	// A live process's mark, held (kept); a gone process's, and one of
	// an earlier process with a pid now reused (both swept).
	held, err := LockProcess(dir, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	start, _ := startTime(os.Getpid())
	gone := filepath.Join(dir, LockName(1<<30, "5"))
	reused := filepath.Join(dir, LockName(os.Getpid(), start+"0"))
	for _, p := range []string{gone, reused} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n := SweepLocks(dir); n != 2 {
		t.Errorf("swept %d, want the 2 of processes gone", n)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 1 || filepath.Base(left[0]) != LockName(os.Getpid(), start) {
		t.Errorf("left %v, want the held mark only", left)
	}
}

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tcagent/tcagent/internal/holds"
)

// ProcessLock marks a process as traced by this agent, so that a second
// agent refuses it rather than export every span twice. It is a flock on a
// file named by the process's pid and start time (holds): the kernel drops
// it when the agent exits, however it exits, and a later process that
// reuses the pid has another name.
type ProcessLock struct{ h *holds.Hold }

// LockProcess marks process pid as traced, in dir (holds.DefaultDir when
// empty). When another agent traces it, the error names that agent (and
// wraps a *holds.HeldError).
func LockProcess(dir string, pid int) (*ProcessLock, error) {
	if dir == "" {
		dir = holds.DefaultDir
	}
	start, err := startTime(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no such process: %d", pid)
		}
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	h, err := holds.Take(dir, LockName(pid, start), true)
	var held *holds.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("pid %d is already traced by %w: one agent per process: stop that one first, or trace all the processes with one agent (--pid A,B,C) or the daemon", pid, held)
	}
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w (see --lock-dir)", pid, err)
	}
	return &ProcessLock{h: h}, nil
}

// Release lets another agent trace the process.
func (l *ProcessLock) Release() {
	if l != nil {
		l.h.Release()
	}
}

// LockName names the mark of the process pid that started at start (clock
// ticks after boot, /proc/PID/stat's field 22): the same for every agent,
// another for the next process with the pid.
func LockName(pid int, start string) string {
	return fmt.Sprintf("tcagent-pid-%d-%s.lock", pid, start)
}

// startTime reads when process pid started (/proc/PID/stat's field 22).
func startTime(pid int) (string, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	return StartTimeIn(string(stat))
}

// StartTimeIn reads the start time from a /proc/PID/stat line: field 22,
// counted after the parenthesised command name (which may hold spaces and
// parentheses).
func StartTimeIn(stat string) (string, error) {
	if i := strings.LastIndexByte(stat, ')'); i >= 0 {
		if f := strings.Fields(stat[i+1:]); len(f) > 19 {
			return f[19], nil
		}
	}
	return "", errors.New("unreadable /proc stat line")
}

// SweepLocks removes, from dir (holds.DefaultDir when empty), the marks
// of processes that are gone, left by agents that could not release them
// (killed with SIGKILL): no one holds them, but their files stay. It
// returns how many it removed.
func SweepLocks(dir string) int {
	if dir == "" {
		dir = holds.DefaultDir
	}
	names, err := filepath.Glob(filepath.Join(dir, "tcagent-pid-*.lock"))
	if err != nil {
		return 0
	}
	n := 0
	for _, path := range names {
		pid, start, ok := parseLockName(filepath.Base(path))
		if !ok {
			continue
		}
		if now, err := startTime(pid); err == nil && now == start {
			continue // the process still runs: its mark may be held
		}
		if holds.Clear(dir, filepath.Base(path)) {
			n++
		}
	}
	return n
}

// parseLockName reads back a LockName.
func parseLockName(name string) (pid int, start string, ok bool) {
	rest, ok := strings.CutPrefix(name, "tcagent-pid-")
	if !ok {
		return 0, "", false
	}
	rest, ok = strings.CutSuffix(rest, ".lock")
	if !ok {
		return 0, "", false
	}
	p, start, ok := strings.Cut(rest, "-")
	if !ok || start == "" {
		return 0, "", false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	return pid, start, true
}

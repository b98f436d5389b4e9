// Package holds marks what an agent holds — a process it traces, a cgroup
// whose sockets it propagates on — with flock(2) on a file of one
// directory, so that another agent finds out before it does the same, and
// can name the holder. The kernel drops a flock when its holder exits,
// however it exits: an agent killed with SIGKILL holds nothing after.
package holds

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDir is where agents mark what they hold: the host's directory for
// lock files (a tmpfs every user may create files in, emptied at boot).
// Agents see each other's marks only when they share it.
const DefaultDir = "/run/lock"

// HeldError says that another agent holds what was asked for.
type HeldError struct {
	// PID is the holder's process id, 0 when it could not be told.
	PID int
	// Mode is how the holder runs (attach, run, daemon), "" when unknown.
	Mode string
}

func (e *HeldError) Error() string {
	switch {
	case e.PID == 0:
		return "another tcagent"
	case e.Mode == "":
		return fmt.Sprintf("process %d", e.PID)
	}
	return fmt.Sprintf("tcagent pid %d (tcagent %s)", e.PID, e.Mode)
}

// Hold is a mark taken; Release gives it back.
type Hold struct {
	f    *os.File
	path string
}

// Take marks name in dir, exclusively or shared: an exclusive mark
// conflicts with every other, a shared one with exclusive ones only. It
// never waits: a conflict is a *HeldError naming the holder.
func Take(dir, name string, exclusive bool) (*Hold, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, os.ErrPermission) {
			// Made by an agent of another user: a read-only descriptor
			// takes a flock just as well.
			f, err = os.Open(path)
		}
		if err != nil {
			return nil, fmt.Errorf("mark %s: %w", path, err)
		}
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := holderOf(f, exclusive)
			f.Close()
			if pid == 0 && attempt < 5 {
				// Released meanwhile, or not listed yet: look again.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return nil, &HeldError{PID: pid, Mode: modeOf(pid)}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("mark %s: %w", path, err)
		}
		// Its last holder may have removed the file between our open and
		// our flock: a mark on a file no longer there marks nothing.
		if same(f, path) {
			return &Hold{f: f, path: path}, nil
		}
		f.Close()
		if attempt >= 20 {
			return nil, fmt.Errorf("mark %s: the file keeps being replaced", path)
		}
	}
}

// Release gives the mark back and removes its file when no one else holds
// it (a shared mark's file stays while other agents hold it).
func (h *Hold) Release() {
	if h == nil || h.f == nil {
		return
	}
	// Only the one holder may remove the file: had others a shared mark on
	// it, an agent coming after would mark a new file and miss theirs.
	if unix.Flock(int(h.f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && same(h.f, h.path) {
		os.Remove(h.path) // in a sticky directory, only its owner may
	}
	h.f.Close()
	h.f = nil
}

// ensureDir makes dir when it is missing, writable by every user (and
// sticky) as /run/lock is, so that agents of other users can mark there.
func ensureDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("marks directory: %w", err)
	}
	return os.Chmod(dir, 0o777|os.ModeSticky)
}

func same(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// holderOf finds, in /proc/locks, the process whose flock on f's file
// conflicts with the mark wanted; 0 when none is listed.
func holderOf(f *os.File, exclusive bool) int {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return 0
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	return Holder(data, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, exclusive)
}

// Holder reads a /proc/locks listing: the pid of the first flock on the
// file (device major:minor, inode) that conflicts with an exclusive or a
// shared mark; 0 when there is none.
//
//	1: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF
func Holder(locks []byte, major, minor uint32, ino uint64, exclusive bool) int {
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	for _, line := range bytes.Split(locks, []byte("\n")) {
		f := strings.Fields(string(line))
		// A lock waited for is listed with "->" before its type.
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != want {
			continue
		}
		if !exclusive && f[3] != "WRITE" {
			continue // shared beside shared
		}
		pid, err := strconv.Atoi(f[4])
		if err != nil || pid <= 0 {
			continue
		}
		return pid
	}
	return 0
}

// modeOf says how tcagent process pid runs: its subcommand (attach, run,
// daemon), "" when pid is not a tcagent command.
func modeOf(pid int) string {
	if pid <= 0 {
		return ""
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return Mode(cmdline)
}

// Mode reads a /proc/PID/cmdline: the tcagent subcommand it runs, the
// first argument that is not a flag, "" when it names none.
func Mode(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for _, a := range args[1:] {
		switch a {
		case "attach", "run", "daemon":
			return a
		}
		if !strings.HasPrefix(a, "-") {
			return ""
		}
	}
	return ""
}

// Clear removes the mark name in dir when no one holds it (its holder
// exited without releasing it: killed, say), and reports whether it did.
func Clear(dir, name string) bool {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil || !same(f, path) {
		return false
	}
	return os.Remove(path) == nil
}

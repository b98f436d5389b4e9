package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// checkPID refuses a --pid that is no process id, or that names a thread
// rather than a process: the
// kernel attaches uprobes to a process (its thread-group id), and a thread's
// id otherwise fails deep in the attach with "file does not exist". Other
// errors (no such process, privilege) are left to the attach, which words
// them.
func checkPID(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("--pid %d: want a process id, a positive number", pid)
	}
	tgid, err := threadGroup(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil || tgid == pid {
		return nil
	}
	return fmt.Errorf("--pid %d is a thread of process %d: give --pid %d", pid, tgid, tgid)
}

// threadGroup reads the Tgid line of a /proc/PID/status file.
func threadGroup(status string) (int, error) {
	f, err := os.Open(status)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Tgid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no Tgid", status)
}

// checkPIDs refuses a --pid list that names a process twice (traced twice,
// each of its spans would be exported twice), and each pid checkPID refuses.
func checkPIDs(pids []int) error {
	seen := make(map[int]bool, len(pids))
	for _, p := range pids {
		if seen[p] {
			return fmt.Errorf("--pid %d given twice: each process is traced once", p)
		}
		seen[p] = true
		if err := checkPID(p); err != nil {
			return err
		}
	}
	return nil
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCheckPID: the test's own process passes; one of its other threads is
// refused with a message naming the process.
func TestCheckPID(t *testing.T) {
	pid := os.Getpid()
	if err := checkPID(pid); err != nil {
		t.Errorf("the process itself: %v", err)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	tid := 0
	for _, e := range tasks {
		if n, _ := strconv.Atoi(e.Name()); n != pid {
			tid = n
			break
		}
	}
	if tid == 0 {
		t.Fatal("the test process has one thread; a Go program has several")
	}
	want := fmt.Sprintf("--pid %d is a thread of process %d: give --pid %d", tid, pid, pid)
	if err := checkPID(tid); err == nil || err.Error() != want {
		t.Errorf("a thread: %v, want %s", err, want)
	}
	// No such process: left to the attach, which says so.
	if err := checkPID(999999999); err != nil {
		t.Errorf("no such process: %v", err)
	}
}

func TestThreadGroup(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "status")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if n, err := threadGroup(write("Name:\tx\nUmask:\t0022\nState:\tS\nTgid:\t42\nNgid:\t0\nPid:\t43\n")); n != 42 || err != nil {
		t.Errorf("Tgid 42: %d, %v", n, err)
	}
	if _, err := threadGroup(write("Name:\tx\nPid:\t43\n")); err == nil {
		t.Error("no Tgid line accepted")
	}
	if _, err := threadGroup(write("Tgid:\tforty\n")); err == nil {
		t.Error("a bad Tgid accepted")
	}
}

func TestCheckPIDs(t *testing.T) {
	for _, ok := range [][]int{{1}, {4, 5, 6}, nil} {
		if err := checkPIDs(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][]int{{7, 7}, {1, 2, 3, 2}} {
		err := checkPIDs(bad)
		if err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("%v: %v, want refused", bad, err)
		}
	}
}

// TestPIDFlagRepeats: the flag as cobra parses it, comma list and
// repeated flag alike, reaches the check with the repeat.
func TestPIDFlagRepeats(t *testing.T) {
	for _, args := range [][]string{{"attach", "--pid", "42,42"}, {"attach", "--pid", "42", "--pid", "42"}} {
		var out, errb strings.Builder
		root := newRoot(&out, &errb)
		root.SetArgs(args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "--pid 42 given twice") {
			t.Errorf("%v: %v, want refused as given twice", args, err)
		}
	}
}

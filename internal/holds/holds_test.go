package holds

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestExclusiveConflicts(t *testing.T) {
	dir := t.TempDir()
	h, err := Take(dir, "a.lock", true)
	if err != nil {
		t.Fatal(err)
	}
	// Two opens of one file are two flocks, even in one process.
	_, err = Take(dir, "a.lock", true)
	var he *HeldError
	if !errors.As(err, &he) || he.PID != os.Getpid() {
		t.Fatalf("second exclusive mark: %v, want held by pid %d", err, os.Getpid())
	}
	if _, err := Take(dir, "a.lock", false); !errors.As(err, &he) {
		t.Fatalf("shared beside exclusive: %v, want held", err)
	}
	if _, err := Take(dir, "b.lock", true); err != nil {
		t.Fatalf("another name: %v", err)
	}
	h.Release()
	if _, err := os.Stat(filepath.Join(dir, "a.lock")); !os.IsNotExist(err) {
		t.Errorf("released mark left its file: %v", err)
	}
	h2, err := Take(dir, "a.lock", true)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	h2.Release()
}

func TestSharedBesideShared(t *testing.T) {
	dir := t.TempDir()
	a, err := Take(dir, "s.lock", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Take(dir, "s.lock", false)
	if err != nil {
		t.Fatalf("two shared marks: %v", err)
	}
	if _, err := Take(dir, "s.lock", true); err == nil {
		t.Fatal("exclusive beside shared taken")
	}
	a.Release()
	// b still holds it: the file stays, and an exclusive mark still fails.
	if _, err := os.Stat(filepath.Join(dir, "s.lock")); err != nil {
		t.Fatalf("file removed while b holds it: %v", err)
	}
	if _, err := Take(dir, "s.lock", true); err == nil {
		t.Fatal("exclusive taken while b holds a shared mark")
	}
	b.Release()
	c, err := Take(dir, "s.lock", true)
	if err != nil {
		t.Fatalf("exclusive after both released: %v", err)
	}
	c.Release()
}

func TestMissingDirMadeForEveryone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "marks")
	h, err := Take(dir, "x.lock", true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("made %v, want drwxrwxrwt", st.Mode())
	}
}

func TestHolder(t *testing.T) {
	locks := []byte("1: FLOCK  ADVISORY  READ  300 00:1a:99 0 EOF\n" +
		"2: POSIX  ADVISORY  WRITE 301 00:1a:77 0 EOF\n" +
		"3: FLOCK  ADVISORY  WRITE 302 00:1a:77 0 EOF\n" +
		"3: -> FLOCK  ADVISORY  WRITE 303 00:1a:77 0 EOF\n" +
		"4: FLOCK  ADVISORY  WRITE 304 fd:01:77 0 EOF\n")
	for _, c := range []struct {
		ino       uint64
		major     uint32
		exclusive bool
		want      int
	}{
		{77, 0, true, 302},  // the POSIX lock and the waiter are not flocks held
		{77, 0, false, 302}, // a WRITE flock conflicts with a shared mark
		{99, 0, true, 300},  // a READ flock conflicts with an exclusive mark
		{99, 0, false, 0},   // but not with a shared one
		{77, 0xfd, true, 0}, // another device: minor 01 there, 1a here
		{55, 0, true, 0},
	} {
		if got := Holder(locks, c.major, 0x1a, c.ino, c.exclusive); got != c.want {
			t.Errorf("Holder(%x:1a:%d, exclusive %v) = %d, want %d", c.major, c.ino, c.exclusive, got, c.want)
		}
	}
}

func TestMode(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/tcagent\x00attach\x00--pid\x0042\x00": "attach",
		"tcagent\x00daemon\x00--config\x00d.yaml\x00":   "daemon",
		"tcagent\x00--help\x00run\x00--\x00prog\x00":    "run",
		"/usr/sbin/nginx\x00-g\x00daemon off;\x00":      "",
		"tcagent.test\x00-test.run\x00TestX\x00":        "",
		"tcagent\x00inspect\x00attach\x00":              "",
		"":                                              "",
	} {
		if got := Mode([]byte(in)); got != want {
			t.Errorf("Mode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHeldErrorNamesHolder(t *testing.T) {
	for e, want := range map[HeldError]string{
		{PID: 42, Mode: "daemon"}: "tcagent pid 42 (tcagent daemon)",
		{PID: 42}:                 "process 42",
		{}:                        "another tcagent",
	} {
		if got := e.Error(); got != want {
			t.Errorf("%+v: %q, want %q", e, got, want)
		}
	}
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tcagent/tcagent/probes"
)

// TestCommandLineErrors: mistakes on the command line are refused in one
// line that says what is wrong, before any process is looked at (the pid
// given, where there is one, does not exist: had the mistake been missed,
// the error would be about it).
func TestCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const pid = "999999999"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"attach", "1234"}, `attach takes no arguments (got "1234"): give the processes as --pid PID[,PID...]`},
		{[]string{"daemon", "daemon.yaml"}, `daemon takes no arguments (got "daemon.yaml"): give the file as --config FILE`},
		{[]string{"version", "x"}, `version takes no arguments (got "x")`},
		{[]string{"inspect", "a", "b"}, `inspect: give one BINARY, or --pid PID (got 2 arguments)`},
		{[]string{"run"}, `run: give the program to start: tcagent run [flags] -- PROGRAM [ARGS...]`},
		{[]string{"attach", "--pid"}, `--pid needs a value`},
		{[]string{"attach", "--pidd", "3"}, `unknown flag --pidd (see tcagent attach --help)`},
		{[]string{"attach", "-p", "3"}, `unknown flag -p (see tcagent attach --help)`},
		{[]string{"attach", "--pid", "1,x"}, `--pid "1,x": "x" is not a whole number`},
		{[]string{"attach", "--pid", pid, "--max-span-age", "5"}, `--max-span-age "5": want a duration such as 30s or 10m`},
		{[]string{"attach", "--pid", pid, "--propagate=maybe"}, `--propagate "maybe": want true or false`},
		{[]string{"attach", "--pid", pid, "--max-open-calls", "99999999999999999999"}, `--max-open-calls "99999999999999999999": "99999999999999999999" is out of range`},
		{[]string{"attach", "--pid", "0"}, `--pid 0: want a process id, a positive number`},
		{[]string{"attach", "--pid", "-3"}, `--pid -3: want a process id, a positive number`},
		{[]string{"attach", "--pid", pid, "--metrics-addr", "", "--max-open-calls", "-1"}, `--max-open-calls -1: want a positive number`},
		{[]string{"attach", "--pid", pid, "--metrics-addr", "", "--max-pending", "0"}, `--max-pending 0: want a positive number`},
		{[]string{"attach", "--pid", pid, "--metrics-addr", "", "--max-span-age", "-1s"}, `--max-span-age -1s: want a positive duration such as 10m`},
		{[]string{"attach", "--pid", pid, "--metrics-addr", "", "--exporter", "otlp", "--output", filepath.Join(dir, "s")},
			`--output is for the jsonl and stdout exporters: otlp sends spans to the Collector`},
		{[]string{"run", "--metrics-addr", "", "--", filepath.Join(dir, "missing")}, `run ` + filepath.Join(dir, "missing") + `: no such file`},
		{[]string{"run", "--metrics-addr", "", "--", text}, `run ` + text + `: permission denied (is it an executable?)`},
		{[]string{"run", "--metrics-addr", "", "--", "tcagent-no-such-program"}, `run tcagent-no-such-program: not found in $PATH`},
		{[]string{"inspect", filepath.Join(dir, "missing")}, filepath.Join(dir, "missing") + `: no such file`},
		{[]string{"inspect", dir}, dir + `: a directory, not an executable`},
		{[]string{"inspect", text}, text + `: not a Go binary: not an ELF executable`},
	} {
		var stdout, stderr bytes.Buffer
		root := newRoot(&stdout, &stderr)
		root.SetArgs(c.args)
		err := root.Execute()
		if err == nil || oneLine(err) != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.args, err, c.want)
		}
		if stdout.Len() != 0 || stderr.Len() != 0 {
			t.Errorf("%q: output besides the error: %q %q", c.args, stdout.String(), stderr.String())
		}
	}
}

// TestNotGoError: the agent's error, which names /proc/PID/exe, names the
// program instead; other errors pass as they are.
func TestNotGoError(t *testing.T) {
	other := errors.New("pid 1: insufficient privilege")
	if err := notGoError("run x", other); err != other {
		t.Errorf("another error was reworded: %v", err)
	}
	agentErr := fmt.Errorf("pid 7: /proc/7/exe: %w (it has no Go build information)", probes.ErrNotGo)
	err := notGoError("run /bin/true", agentErr)
	if err.Error() != "run /bin/true: not a Go binary: tcagent traces programs Go built" || !errors.Is(err, probes.ErrNotGo) {
		t.Errorf("reworded as %v", err)
	}
	exe, _ := os.Executable()
	if got, want := pidProgram(os.Getpid()), "pid "+strconv.Itoa(os.Getpid())+" runs "+exe; got != want {
		t.Errorf("pidProgram = %q, want %q", got, want)
	}
	if got := pidProgram(999999999); got != "pid 999999999" {
		t.Errorf("pidProgram of no process = %q", got)
	}
}

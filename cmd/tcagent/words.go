package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tcagent/tcagent/probes"
)

// The errors of the command line, worded for the user: cobra and pflag say
// `unknown command "1234" for "tcagent attach"` for a stray argument and
// `strconv.Atoi: parsing "x": invalid syntax` for a bad number.

// noArgs refuses arguments to a command that takes only flags, saying how
// to give what the user probably meant.
func noArgs(hint string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("%s takes no arguments (got %q)", cmd.Name(), args[0])
		if hint != "" {
			msg += ": " + hint
		}
		return errors.New(msg)
	}
}

var (
	flagValueRE = regexp.MustCompile(`^invalid argument "(.*)" for "(.*?)" flag: (.*)$`)
	parseRE     = regexp.MustCompile(`^strconv\.(\w+): parsing "(.*)": (.*)$`)
)

// flagError words a flag parsing error of cmd.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if m := flagValueRE.FindStringSubmatch(msg); m != nil {
		value, flag, reason := m[1], m[2], m[3]
		if p := parseRE.FindStringSubmatch(reason); p != nil {
			switch {
			case p[1] == "ParseBool":
				reason = "want true or false"
			case strings.Contains(p[3], "out of range"):
				reason = fmt.Sprintf("%q is out of range", p[2])
			default:
				reason = fmt.Sprintf("%q is not a whole number", p[2])
			}
		} else if strings.HasPrefix(reason, "time: ") {
			reason = "want a duration such as 30s or 10m"
		}
		return fmt.Errorf("%s %q: %s", flag, value, reason)
	}
	if flag, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		if strings.HasPrefix(flag, "'") { // shorthand: 'p' in -p
			flag = flag[strings.LastIndex(flag, " ")+1:]
		}
		return fmt.Errorf("%s needs a value", flag)
	}
	for _, prefix := range []string{"unknown flag: ", "unknown shorthand flag: "} {
		if flag, ok := strings.CutPrefix(msg, prefix); ok {
			if i := strings.LastIndex(flag, " in "); i >= 0 { // 'p' in -p
				flag = flag[i+len(" in "):]
			}
			return fmt.Errorf("unknown flag %s (see %s --help)", flag, cmd.CommandPath())
		}
	}
	return err
}

// startError words why `run` could not start prog.
func startError(prog string, err error) error {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("run %s: not found in $PATH", prog)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("run %s: no such file", prog)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("run %s: permission denied (is it an executable?)", prog)
	}
	return fmt.Errorf("run %s: %w", prog, err)
}

// notGoError words the agent's error for a program Go did not build, which
// names /proc/PID/exe: what is the program the user knows, such as
// "pid 42 runs /usr/bin/sleep" or "run /bin/true".
func notGoError(what string, err error) error {
	if !errors.Is(err, probes.ErrNotGo) {
		return err
	}
	return fmt.Errorf("%s: %w: tcagent traces programs Go built", what, probes.ErrNotGo)
}

// pidProgram is "pid N runs EXE", or "pid N" when its executable is
// unreadable.
func pidProgram(pid int) string {
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		return fmt.Sprintf("pid %d runs %s", pid, exe)
	}
	return fmt.Sprintf("pid %d", pid)
}

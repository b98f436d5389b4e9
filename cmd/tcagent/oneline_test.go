package main

import (
	"errors"
	"fmt"
	"testing"
)

// TestOneLine: whatever an error holds, tcagent prints it on one line
// that keeps every line of it, in order, told apart.
func TestOneLine(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"one line", errors.New(`--pid 0: want a process id, a positive number`), `--pid 0: want a process id, a positive number`},
		{"joined", errors.Join(errors.New("close output: disk full"), errors.New("detach: bad file descriptor")),
			"close output: disk full; detach: bad file descriptor"},
		{"a tool's output", fmt.Errorf("go build x with go1.22.12: %v\n%s", errors.New("exit status 1"), "# x\n./main.go:3:2: undefined: y\n"),
			"go build x with go1.22.12: exit status 1; # x; ./main.go:3:2: undefined: y"},
		{"a heading", errors.New("yaml: unmarshal errors:\n  line 3: cannot unmarshal !!str `x` into int\n  line 4: field y not found"),
			"yaml: unmarshal errors: line 3: cannot unmarshal !!str `x` into int; line 4: field y not found"},
		{"blank lines and CRLF", errors.New("\r\nfirst\r\n\r\n  \nsecond\r\n"), "first; second"},
	} {
		if got := oneLine(c.err); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

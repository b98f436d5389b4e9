package kerneltests

import (
	"os/exec"
	"testing"
	"time"

	"github.com/tcagent/tcagent/discover"
)

// TestDiscover: a process running when the watch begins is reported as
// existing; one started later is reported as started, and its exit as an
// exit (each waited for with a generous deadline: the event must come, how
// fast is the benchmarks' business).
func TestDiscover(t *testing.T) {
	before := exec.Command("sleep", "3600")
	if err := before.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { before.Process.Kill(); before.Wait() }()
	w, err := discover.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	next := func(want func(discover.Event) bool, within time.Duration) (discover.Event, bool) {
		deadline := time.After(within)
		for {
			select {
			case ev, ok := <-w.Events():
				if !ok {
					return ev, false
				}
				if want(ev) {
					return ev, true
				}
			case <-deadline:
				return discover.Event{}, false
			}
		}
	}
	if _, ok := next(func(ev discover.Event) bool { return ev.PID == before.Process.Pid && ev.Existing }, 30*time.Second); !ok {
		t.Fatal("a process running before the watch was not reported")
	}
	// It lives until the test has seen its exec, so its exit comes after.
	later := exec.Command("sleep", "3600")
	if err := later.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { later.Process.Kill(); later.Wait() }()
	pid := later.Process.Pid
	if _, ok := next(func(ev discover.Event) bool { return ev.PID == pid && ev.Kind == discover.Started && !ev.Existing }, 30*time.Second); !ok {
		t.Fatal("a process's exec was not reported (waited 30s)")
	}
	later.Process.Kill()
	later.Wait()
	if _, ok := next(func(ev discover.Event) bool { return ev.PID == pid && ev.Kind == discover.Exited }, 30*time.Second); !ok {
		t.Fatal("a process's exit was not reported (waited 30s)")
	}
	if n, err := w.Lost(); err != nil || n != 0 {
		t.Errorf("%d events lost, %v", n, err)
	}
}

package kerneltests

import (
	"os/exec"
	"testing"
	"time"

	"github.com/tcagent/tcagent/discover"
)

// TestDiscover: a process running when the watch begins is reported as
// existing; one started later is reported within a second of its exec, and
// its exit too.
func TestDiscover(t *testing.T) {
	before := exec.Command("sleep", "5")
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
	if _, ok := next(func(ev discover.Event) bool { return ev.PID == before.Process.Pid && ev.Existing }, 5*time.Second); !ok {
		t.Fatal("a process running before the watch was not reported")
	}
	later := exec.Command("sleep", "0.2")
	start := time.Now()
	if err := later.Start(); err != nil {
		t.Fatal(err)
	}
	pid := later.Process.Pid
	if _, ok := next(func(ev discover.Event) bool { return ev.PID == pid && ev.Kind == discover.Started && !ev.Existing }, time.Second); !ok {
		t.Fatal("a process's exec was not reported within a second")
	}
	t.Logf("exec reported after %v", time.Since(start))
	later.Wait()
	ended := time.Now()
	if _, ok := next(func(ev discover.Event) bool { return ev.PID == pid && ev.Kind == discover.Exited }, time.Second); !ok {
		t.Fatal("a process's exit was not reported within a second")
	}
	t.Logf("exit reported after %v", time.Since(ended))
	if n, err := w.Lost(); err != nil || n != 0 {
		t.Errorf("%d events lost, %v", n, err)
	}
}

package main

import "fmt"

// checkLimits refuses limits below one: the lifecycle would read zero as
// its default and a negative count or age as "drop everything", silently.
func (f *traceFlags) checkLimits() error {
	for _, l := range []struct {
		flag string
		n    int
	}{{"--max-open-calls", f.limits.MaxOpenCalls}, {"--max-goroutines", f.limits.MaxGoroutines}, {"--max-pending", f.limits.MaxPending}} {
		if l.n < 1 {
			return fmt.Errorf("%s %d: want a positive number", l.flag, l.n)
		}
	}
	if f.limits.MaxSpanAge <= 0 {
		return fmt.Errorf("--max-span-age %v: want a positive duration such as 10m", f.limits.MaxSpanAge)
	}
	return nil
}

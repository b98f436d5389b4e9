package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
)

// Developer hooks, not part of the CLI: TCAGENT_CPUPROFILE=FILE writes a CPU
// profile of the whole run and TCAGENT_HEAPPROFILE=FILE a heap profile at its
// end, for `go tool pprof` (bench/README §8 measures the agent with them).
// With TCAGENT_HEAPPROFILE, SIGUSR1 writes the heap profile at once (the
// live heap of a daemon that is tracing, which the one at its end, all
// detached, is not: bench/README §8g); GODEBUG=memprofilerate=1 makes it
// count every allocation rather than a sample.
const (
	cpuProfileEnv  = "TCAGENT_CPUPROFILE"
	heapProfileEnv = "TCAGENT_HEAPPROFILE"
)

// startProfiles starts what the environment asks for and returns the
// function that writes the profiles out.
func startProfiles() (stop func(), err error) {
	var cpu *os.File
	if path := os.Getenv(cpuProfileEnv); path != "" {
		if cpu, err = os.Create(path); err != nil {
			return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
		}
		if err = pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
		}
	}
	heap := os.Getenv(heapProfileEnv)
	var usr1 chan os.Signal
	if heap != "" {
		usr1 = make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				writeHeapProfile(heap)
			}
		}()
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if heap == "" {
			return
		}
		signal.Stop(usr1)
		writeHeapProfile(heap)
	}, nil
}

// writeHeapProfile writes the heap as the last garbage collection left it
// (one is run first) to path.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcagent: %s: %v\n", heapProfileEnv, err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintf(os.Stderr, "tcagent: %s: %v\n", heapProfileEnv, err)
	}
}

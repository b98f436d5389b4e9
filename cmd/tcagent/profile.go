package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// Developer hooks, not part of the CLI: TCAGENT_CPUPROFILE=FILE writes a CPU
// profile of the whole run and TCAGENT_HEAPPROFILE=FILE a heap profile at its
// end, for `go tool pprof` (bench/README §8 measures the agent with them).
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
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if heap == "" {
			return
		}
		f, err := os.Create(heap)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tcagent: %s: %v\n", heapProfileEnv, err)
			return
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintf(os.Stderr, "tcagent: %s: %v\n", heapProfileEnv, err)
		}
	}, nil
}

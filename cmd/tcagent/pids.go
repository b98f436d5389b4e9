package main

import "fmt"

// checkPIDs refuses a --pid list that names a process twice: traced twice,
// each of its spans would be exported twice.
func checkPIDs(pids []int) error {
	seen := make(map[int]bool, len(pids))
	for _, p := range pids {
		if seen[p] {
			return fmt.Errorf("--pid %d given twice: each process is traced once", p)
		}
		seen[p] = true
	}
	return nil
}

// Command target is the traced program of the per-call benchmark: for each
// line "N" on stdin it calls Noop N times and prints the mean ns per call.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"time"
)

var sink int

// Noop does nearly nothing, but has a frame and so a stack check: its entry
// probe goes on the PUSHQ BP after the check, as for most real functions.
//
//go:noinline
func Noop(n int, s string) int {
	if n < 0 {
		return Noop(n+1, s)
	}
	return n + len(s)
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		start := time.Now()
		for i := 0; i < n; i++ {
			sink += Noop(i, "benchmark-key")
		}
		fmt.Println(time.Since(start).Nanoseconds() / int64(n))
	}
}

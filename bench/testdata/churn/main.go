// Command churn is the target of the goroutine-churn benchmark
// (bench/http): for each line "N" on stdin it starts N goroutines one after
// another, each of which only signals that it ran, waits for all of them
// and prints the mean ns per `go` statement (creation, run and exit).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

var sink int

// Unused is never called: a custom probe on it makes tcagent attach the
// runtime's goroutine probes (creation, exit, panic) and nothing else.
//
//go:noinline
func Unused(n int) int { return n + 1 }

func main() {
	if len(os.Args) > 5 {
		sink = Unused(len(os.Args))
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil || n <= 0 {
			fmt.Println("error: want a positive count, got", sc.Text())
			continue
		}
		var wg sync.WaitGroup
		start := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() { wg.Done() }()
		}
		wg.Wait()
		fmt.Println(time.Since(start).Nanoseconds() / int64(n))
	}
}

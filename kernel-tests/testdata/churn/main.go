// Command churn is the daemon tests' traced program: it calls Boot with
// its tag as the first thing main does, so that a test can tell whether a
// process was traced from its start, then calls Work until it is killed.
// With -listen it also listens on a TCP port.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

var sink int

//go:noinline
func Boot(tag string) int { return len(tag) }

//go:noinline
func Work(n int) int {
	sink += n
	return n * 2
}

func main() {
	tag := flag.String("tag", "", "what Boot is called with")
	listen := flag.String("listen", "", "a TCP address to listen on after a while")
	flag.Bool("traced", false, "only for the daemon's cmdline selector")
	flag.Parse()
	Boot(*tag)
	if *listen != "" {
		time.Sleep(300 * time.Millisecond)
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer ln.Close()
	}
	for i := 0; ; i++ {
		Work(i)
		time.Sleep(20 * time.Millisecond)
	}
}

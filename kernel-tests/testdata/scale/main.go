// Command scale is the daemon scale test's and benchmark's traced service:
// a small net/http server on a port the kernel picks, printing
// "ready http://ADDR" once it listens. Built many times with
// -ldflags=-X main.id=N, each build is a distinct executable (its own
// path and build id), as a node's many services are; GET / answers the id.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

// id tells the builds apart (set at link time).
var id = "unset"

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, id) })
	fmt.Printf("ready http://%s\n", ln.Addr())
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

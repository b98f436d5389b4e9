// Command printer is the fixture of the CLI output tests: a program whose
// own output must stay apart from the spans, and a server whose status
// codes the tests choose.
//
//	printer -print N   calls Work(i) for i < N; each prints "line i" to
//	                   stdout and "note i" to stderr; then it exits 0
//	printer -serve     serves GET /status/{code} with that status on
//	                   127.0.0.1 at a port from the kernel, prints
//	                   "listening ADDR", and exits when stdin closes
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
)

// Work is the traced call: one line on stdout, one on stderr.
//
//go:noinline
func Work(i int) int {
	fmt.Printf("line %d\n", i)
	fmt.Fprintf(os.Stderr, "note %d\n", i)
	return i * 2
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-print" {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for i := 0; i < n; i++ {
			Work(i)
		}
		return
	}
	if len(os.Args) == 2 && os.Args[1] == "-serve" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /status/{code}", func(w http.ResponseWriter, r *http.Request) {
			code, err := strconv.Atoi(r.PathValue("code"))
			if err != nil || code < 200 || code > 599 {
				code = http.StatusBadRequest
			}
			w.WriteHeader(code)
		})
		go http.Serve(ln, mux)
		fmt.Printf("listening %s\n", ln.Addr())
		io.Copy(io.Discard, os.Stdin)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: printer -print N | printer -serve")
	os.Exit(2)
}

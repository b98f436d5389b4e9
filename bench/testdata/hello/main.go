// Command hello is the server of the side-by-side HTTP benchmark
// (bench/http): a net/http server answering every request with a fixed
// body, so that the cost measured is the server's and tcagent's, not the
// handler's. It listens on a port the kernel picks and prints its address.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	body := []byte("hello\n")
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	fmt.Fprintln(os.Stderr, "hello:", err)
	os.Exit(1)
}

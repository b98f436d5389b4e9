// Command gin is the server of the side-by-side HTTP benchmark's routes
// run (bench/http -server gin): hello's fixed body served by gin on a
// parameterised route, so that the cost measured is the routes set's
// probe, not the handler's work. It listens on a port the kernel picks
// and prints its address.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/gin-gonic/gin"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gin:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	body := []byte("hello\n")
	r.GET("/hello/:id", func(c *gin.Context) { c.Writer.Write(body) })
	err = http.Serve(ln, r)
	fmt.Fprintln(os.Stderr, "gin:", err)
	os.Exit(1)
}

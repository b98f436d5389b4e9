// Command reference links in gin the way the routes built-in probe reads
// it, so that offsetgen can read its struct layouts from DWARF. The
// offsets tool writes its go.mod for each gin release; it is built, never
// run.
package main

import (
	"net/http"
	"os"

	"github.com/gin-gonic/gin"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the engine linked in
		return
	}
	r := gin.New()
	r.GET("/users/:id", func(c *gin.Context) { c.String(http.StatusOK, c.FullPath()) })
	http.ListenAndServe(os.Args[1], r)
}

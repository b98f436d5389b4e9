// Command reference links in echo v4 the way the routes built-in probe
// reads it, so that offsetgen can read its struct layouts from DWARF. The
// offsets tool writes its go.mod for each echo release; it is built, never
// run.
package main

import (
	"net/http"
	"os"

	"github.com/labstack/echo/v4"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the server linked in
		return
	}
	e := echo.New()
	e.GET("/users/:id", func(c echo.Context) error { return c.String(http.StatusOK, c.Path()) })
	http.ListenAndServe(os.Args[1], e)
}

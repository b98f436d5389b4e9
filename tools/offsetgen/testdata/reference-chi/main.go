// Command reference links in chi the way the routes built-in probe reads
// it, so that offsetgen can read its struct layouts from DWARF. The
// offsets tool writes its go.mod for each chi release; it is built, never
// run.
package main

import (
	"io"
	"net/http"
	"os"

	"github.com/go-chi/chi/v5"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the router linked in
		return
	}
	r := chi.NewRouter()
	r.Get("/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, chi.RouteContext(r.Context()).RoutePattern())
	})
	http.ListenAndServe(os.Args[1], r)
}

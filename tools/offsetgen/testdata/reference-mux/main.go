// Command reference links in gorilla/mux the way the routes built-in probe
// reads it, so that offsetgen can read its struct layouts from DWARF. The
// offsets tool writes its go.mod for each gorilla/mux release; it is
// built, never run.
package main

import (
	"io"
	"net/http"
	"os"

	"github.com/gorilla/mux"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the router linked in
		return
	}
	r := mux.NewRouter()
	r.HandleFunc("/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, _ := mux.CurrentRoute(r).GetPathTemplate()
		io.WriteString(w, t)
	})
	http.ListenAndServe(os.Args[1], r)
}

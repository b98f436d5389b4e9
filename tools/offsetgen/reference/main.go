// Command reference links in the packages tcagent's built-in probes read,
// so that offsetgen can read their struct layouts from its DWARF. It is
// built, never run.
package main

import (
	"context"
	"database/sql"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps the server and client linked in
		return
	}
	http.Handle("/", http.NotFoundHandler())
	_ = http.ListenAndServe(os.Args[1], nil)
	db, _ := sql.Open("none", "")
	tx, _ := db.Begin()
	_, _ = tx.Exec("")
	conn, _ := db.Conn(context.Background())
	_, _ = conn.ExecContext(context.Background(), "")
	_, _ = http.DefaultClient.Get(os.Args[2])
}

// Command sqlitefixture runs the built-in SQL tests' statements against an
// in-memory SQLite database (modernc.org/sqlite, pure Go). Like the main
// fixture, it answers "ok CMD" on stdout to each command on stdin.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	// Two drivers linked in: only the driver's type can tell which
	// database a statement goes to.
	_ "github.com/lib/pq"
	_ "modernc.org/sqlite"
)

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func run(db *sql.DB) {
	var one int
	must(db.QueryRow("SELECT 1").Scan(&one))
	_, err := db.Exec("CREATE TABLE IF NOT EXISTS items (id INTEGER, name TEXT)")
	must(err)
	_, err = db.Exec("INSERT INTO items VALUES (?, ?), (?, ?)", 1, "apple", 2, "pear")
	must(err)
	rows, err := db.Query("SELECT id, name FROM items ORDER BY id")
	must(err)
	rows.Next()
	time.Sleep(30 * time.Millisecond)
	rows.Close()
	if _, err := db.Query("SELEC broken"); err == nil {
		panic("a broken query succeeded")
	}
	tx, err := db.Begin()
	must(err)
	_, err = tx.Exec("UPDATE items SET name = ? WHERE id = ?", "plum", 2)
	must(err)
	must(tx.Commit())
}

// rollback rolls a transaction back with a direct call; commits one whose
// deferred Rollback returns sql.ErrTxDone (the usual `defer tx.Rollback()`);
// and cancels the context of an open one, which database/sql's awaitDone
// goroutine (started by BeginTx) then rolls back.
func rollback(db *sql.DB) {
	tx, err := db.Begin()
	must(err)
	_, err = tx.Exec("DELETE FROM items WHERE id = ?", 1)
	must(err)
	must(tx.Rollback())
	committed(db)
	ctx, cancel := context.WithCancel(context.Background())
	_, err = db.BeginTx(ctx, nil)
	must(err)
	cancel()
}

func committed(db *sql.DB) {
	tx, err := db.Begin()
	must(err)
	defer tx.Rollback()
	must(tx.Commit())
}

func main() {
	db, err := sql.Open("sqlite", ":memory:")
	must(err)
	db.SetMaxOpenConns(1)
	must(db.Ping())
	// Goroutines of database/sql that outlive a command: sql.Open's
	// connection opener.
	base := runtime.NumGoroutine()
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		switch cmd {
		case "sql":
			run(db)
		case "rollback":
			rollback(db)
		}
		// Each transaction's awaitDone goroutine rolls back (a no-op after
		// Commit or Rollback) and exits once the transaction ends: a command
		// is done when they all are.
		for deadline := time.Now().Add(time.Minute); runtime.NumGoroutine() > base; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				panic(fmt.Sprintf("%d goroutines a minute after %s, %d before", runtime.NumGoroutine(), cmd, base))
			}
		}
		fmt.Println("ok " + cmd)
	}
}

// Command demo is a small order service for tcagent's demo: an HTTP handler
// that calls into a store kept in SQLite, calls an audit endpoint over HTTP,
// and has an error path, nesting and recursion. tcagent's built-in probes
// trace its HTTP and SQL with no probe file; probes.yaml adds its own
// functions. With -drive URL it instead sends a few requests to a running
// demo and exits.
package main

import (
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"

	_ "modernc.org/sqlite"
)

// Store keeps the stock in an SQLite database.
type Store struct {
	db *sql.DB
}

var errUnknownItem = errors.New("unknown item")

// Get returns an item's stock.
//
//go:noinline
func (s *Store) Get(item string) (int, error) {
	var n int
	err := s.db.QueryRow("SELECT qty FROM stock WHERE item = ?", item).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("get %s: %w", item, errUnknownItem)
	}
	return n, err
}

// Put sets an item's stock.
//
//go:noinline
func (s *Store) Put(item string, n int) error {
	_, err := s.db.Exec("UPDATE stock SET qty = ? WHERE item = ?", n, item)
	return err
}

// audit records an order with the audit service (here, the demo itself).
func audit(base, user string, total int) {
	resp, err := http.Post(base+"/audit", "text/plain", strings.NewReader(fmt.Sprintf("%s %d", user, total)))
	if err == nil {
		resp.Body.Close()
	}
}

// checkLimit is traced with span: false: its arguments and result become
// attributes of the order span.
//
//go:noinline
func checkLimit(user string, qty int) bool {
	return qty > 5 && user != "admin"
}

// price is recursive on purpose: each level is its own span.
//
//go:noinline
func price(qty int) int {
	if qty <= 1 {
		return 10 * qty
	}
	return 10 + price(qty-1)
}

// placeOrder takes qty of item from the store for user.
//
//go:noinline
func placeOrder(s *Store, user, item string, qty int) (int, error) {
	if qty <= 0 {
		return 0, errors.New("quantity must be positive")
	}
	have, err := s.Get(item)
	if err != nil {
		return 0, err
	}
	if checkLimit(user, qty) {
		return 0, fmt.Errorf("user %s is limited to 5 items", user)
	}
	if have < qty {
		return 0, fmt.Errorf("only %d %s left", have, item)
	}
	if err := s.Put(item, have-qty); err != nil {
		return 0, err
	}
	return price(qty), nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8765", "listen address")
	drive := flag.String("drive", "", "send demo requests to this base URL and exit")
	ping := flag.Bool("ping", false, "with -drive: only check that the service answers")
	flag.Parse()
	if *drive != "" && *ping {
		resp, err := http.Get(*drive + "/order")
		if err != nil {
			os.Exit(1)
		}
		resp.Body.Close()
		os.Exit(0)
	}
	if *drive != "" {
		os.Exit(driveRequests(*drive))
	}
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one in-memory database
	if _, err := db.Exec("CREATE TABLE stock (item TEXT PRIMARY KEY, qty INTEGER); INSERT INTO stock VALUES ('apple', 10), ('pear', 3)"); err != nil {
		log.Fatal(err)
	}
	s := &Store{db: db}
	base := "http://" + *addr
	http.HandleFunc("GET /order", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		qty, _ := strconv.Atoi(q.Get("qty"))
		total, err := placeOrder(s, q.Get("user"), q.Get("item"), qty)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		audit(base, q.Get("user"), total)
		fmt.Fprintf(w, "total %d\n", total)
	})
	http.HandleFunc("POST /audit", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	})
	log.Printf("demo listening on %s (pid %d)", *addr, os.Getpid())
	log.Fatal(http.ListenAndServe(*addr, nil))
}

func driveRequests(base string) int {
	for _, q := range []string{
		"user=alice&item=apple&qty=3",
		"user=bob&item=plum&qty=1",
		"user=carol&item=pear&qty=0",
	} {
		resp, err := http.Get(base + "/order?" + q)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo driver:", err)
			return 1
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(os.Stderr, "GET /order?%s -> %d %s", q, resp.StatusCode, body)
	}
	return 0
}

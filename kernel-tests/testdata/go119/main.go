// Command go119 is the fixture for Go 1.19 and 1.20, the releases before
// runtime.g.parentGoid (Go 1.22's ServeMux patterns and PathValue do not
// exist there, so the main fixture cannot be built by them). Its traced
// functions and commands are the main fixture's, with the same names, and
// it answers "ok CMD" to each command.
package main

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	_ "github.com/lib/pq"
)

//go:noinline
func Types(i int, u uint, b bool, s string, small int8) (int, string) {
	return i * 2, s + "!"
}

type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("code %d", e.code) }

var errBase = errors.New("base failure")

//go:noinline
func Fail(mode int) (int, error) {
	switch mode {
	case 0:
		return 0, errors.New("plain failure")
	case 1:
		return 0, fmt.Errorf("wrapped: %w", errBase)
	case 2:
		return 7, nil
	}
	return 0, &codeError{code: mode}
}

//go:noinline
func Outer(n int) int { return Middle(n+1) + 1 }

//go:noinline
func Middle(n int) int { return Inner(n+1) + 1 }

//go:noinline
func Inner(n int) int { return n * 3 }

//go:noinline
func Recurse(n int) int {
	if n <= 1 {
		return 1
	}
	return Recurse(n-1) + 1
}

//go:noinline
func Child(id int) int { return id }

// Parent starts three goroutines that call Child and waits for them.
//
//go:noinline
func Parent() int {
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			Child(id)
		}(i)
	}
	wg.Wait()
	return 3
}

// Parent3 calls Child three go statements down.
//
//go:noinline
func Parent3() int {
	done := make(chan struct{})
	go func() {
		go func() {
			go func() {
				Child(100)
				close(done)
			}()
		}()
	}()
	<-done
	return 1
}

// AsyncWork returns at once; its goroutines call Child 30 and 50 ms later.
//
//go:noinline
func AsyncWork(wg *sync.WaitGroup) int {
	for i, d := range []time.Duration{30 * time.Millisecond, 50 * time.Millisecond} {
		wg.Add(1)
		go func(id int, d time.Duration) {
			defer wg.Done()
			time.Sleep(d)
			Child(id)
		}(i, d)
	}
	return 2
}

//go:noinline
func Recoverer() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("recovered: %v", r)
		}
	}()
	PanicA()
	return nil
}

//go:noinline
func PanicA() int { return PanicB() + 1 }

//go:noinline
func PanicB() int { panic("boom") }

//go:noinline
func Handler(n int) int {
	if n > 0 {
		panic(errors.New("handler failed"))
	}
	return n
}

//go:noinline
func Exiter() int {
	runtime.Goexit()
	return 0
}

// Blob holds bytes that are no text: Opaque's probe reads it as a string
// on purpose (a probe spec that is wrong about its argument).
type Blob struct{ b [16]byte }

//go:noinline
func Opaque(b *Blob, n int) int { return n + int(b.b[0]) }

func httpPanic() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Handler(1)
	})}
	go srv.Serve(ln)
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	srv.Close()
	time.Sleep(50 * time.Millisecond) // let the connection's goroutine exit
}

var (
	httpOnce sync.Once
	httpBase string
)

// httpServer serves the routes of the built-in HTTP test, once, with the
// ServeMux of these releases (no method or wildcard patterns).
func httpServer() string {
	httpOnce.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/users/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "user %s", strings.TrimPrefix(r.URL.Path, "/users/"))
		})
		mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "failed", http.StatusInternalServerError)
		})
		mux.HandleFunc("/boom", func(w http.ResponseWriter, r *http.Request) {
			Handler(1)
		})
		srv := &http.Server{Handler: mux}
		go srv.Serve(ln)
		httpBase = "http://" + ln.Addr().String()
	})
	return httpBase
}

func httpCalls() {
	base := httpServer()
	do := func(method, path string) {
		req, _ := http.NewRequest(method, base+path, nil)
		if path == "/users/42" {
			req.Header.Set("User-Agent", "tcagent-test/1.0")
			for i := 0; i < 12; i++ {
				req.Header.Set(fmt.Sprintf("X-Test-%d", i), "value")
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	do("GET", "/users/42")
	do("POST", "/fail")
	do("GET", "/nope")
	do("GET", "/boom")
	// A transport error: nothing listens there.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if resp, err := http.Get("http://" + addr + "/x"); err == nil {
		resp.Body.Close()
	}
	time.Sleep(50 * time.Millisecond) // let the server's handlers return
}

// sqlCalls runs the statements of the built-in SQL tests against the
// PostgreSQL server TCAGENT_PG_DSN names, as the main fixture does.
func sqlCalls() {
	db, err := sql.Open("postgres", os.Getenv("TCAGENT_PG_DSN"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
		panic(err)
	}
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS items (id int, name text)"); err != nil {
		panic(err)
	}
	if _, err := db.Exec("INSERT INTO items VALUES ($1, $2), ($3, $4)", 1, "apple", 2, "pear"); err != nil {
		panic(err)
	}
	rows, err := db.Query("SELECT id, name FROM items ORDER BY id")
	if err != nil {
		panic(err)
	}
	rows.Next() // read one row, keep the rows open 30ms
	time.Sleep(30 * time.Millisecond)
	rows.Close()
	if _, err := db.Query("SELEC broken"); err == nil {
		panic("a broken query succeeded")
	}
	tx, err := db.Begin()
	if err != nil {
		panic(err)
	}
	if _, err := tx.Exec("UPDATE items SET name = $1 WHERE id = $2", "plum", 2); err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}
}

func run(cmd string) {
	switch cmd {
	case "types":
		Types(-42, 42, true, "hello", -7)
		Types(1, 2, false, strings.Repeat("x", 300), 100)
	case "errors":
		for mode := 0; mode < 4; mode++ {
			Fail(mode)
		}
	case "nested":
		Outer(1)
	case "recurse":
		Recurse(50)
	case "fanout":
		Parent()
	case "fanout3":
		Parent3()
	case "asyncgo":
		var wg sync.WaitGroup
		AsyncWork(&wg)
		wg.Wait()
		time.Sleep(10 * time.Millisecond) // let the goroutines exit
	case "panic":
		Recoverer()
	case "httppanic":
		httpPanic()
	case "goexit":
		done := make(chan struct{})
		go func() {
			defer close(done)
			Exiter()
		}()
		<-done
		time.Sleep(20 * time.Millisecond) // the deferred close runs before goexit1
	case "opaque":
		b := &Blob{}
		for i := range b.b {
			b.b[i] = byte(i + 1) // control characters, not text
		}
		Opaque(b, 8)
	case "http":
		httpCalls()
	case "sql":
		sqlCalls()
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", cmd)
		os.Exit(2)
	}
}

func main() {
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		run(cmd)
		fmt.Println("ok " + cmd)
	}
}

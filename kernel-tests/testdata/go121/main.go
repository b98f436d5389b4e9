// Command go121 is the fixture for the oldest supported Go release (built
// with Go 1.21, stripped): goroutine lineage, returned errors and the http
// built-ins. Like the main fixture, it answers "ok CMD" to each command.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
)

//go:noinline
func Work(s string) (int, error) {
	if s == "bad" {
		return 0, errors.New("bad input")
	}
	return len(s), nil
}

//go:noinline
func Spawn() int {
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Work("child")
		}()
	}
	wg.Wait()
	return 2
}

func main() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		Work(r.URL.Path)
	}))
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		if cmd == "all" {
			Spawn()
			Work("bad")
			for _, p := range []string{"/hello", "/fail"} {
				if resp, err := http.Get(srv.URL + p); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
		fmt.Println("ok " + cmd)
	}
}

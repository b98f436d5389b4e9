// Command service is the target of tcagent's overhead benchmarks: an HTTP
// server (GET /work/{id}), a traced function called at a steady rate
// (-rate), and, on "churn" on stdin, 100,000 goroutines started and finished
// under a traced call.
package main

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

var sink byte

// Tick is called -rate times a second.
//
//go:noinline
func Tick(i int) int {
	if i < 0 {
		return Tick(i + 1)
	}
	return i * 2
}

// Churn starts and finishes n goroutines.
//
//go:noinline
func Churn(n int) int {
	var wg sync.WaitGroup
	for i := 0; i < n; i += 1000 {
		for j := 0; j < 1000; j++ {
			wg.Add(1)
			go func() { wg.Done() }()
		}
		wg.Wait()
	}
	return n
}

func main() {
	addr := flag.String("addr", "", "serve HTTP on this address")
	rate := flag.Int("rate", 0, "calls of Tick per second")
	flag.Parse()
	if *addr != "" {
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			log.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /work/{id}", func(w http.ResponseWriter, r *http.Request) {
			sum := sha256.Sum256([]byte(r.PathValue("id")))
			sink ^= sum[0]
			fmt.Fprintf(w, "%x\n", sum[:4])
		})
		go http.Serve(ln, mux)
	}
	if *rate > 0 {
		go func() {
			// Batches every millisecond: steady, whatever the timer's grain.
			per := *rate / 1000
			t := time.NewTicker(time.Millisecond)
			for i := 0; ; i++ {
				<-t.C
				for j := 0; j < per; j++ {
					Tick(i)
				}
			}
		}()
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "churn" {
			Churn(100000)
		}
		fmt.Println("ok " + sc.Text())
	}
}

// Command chain is one hop of a chain of services for the trace-context
// propagation tests: GET /hop calls the next service's /hop, if there is
// one. With CHAIN_TLS=1 it serves HTTP/1.1 over TLS (a self-signed
// certificate made at start) and calls the next one so. On standard input it takes commands that send requests of every
// shape the socket programs must leave intact (apart from the header they
// add), answering "ok CMD" once done.
package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// kept is a transport whose connection outlives one command: the test
// opens it before the agent attaches.
var kept = &http.Transport{}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	next := ""
	if len(os.Args) > 1 {
		next = os.Args[1]
	}
	scheme := "http"
	if os.Getenv("CHAIN_TLS") == "1" {
		scheme = "https"
		cert, err := selfSigned()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// HTTP/1.1 only: no h2 in ALPN.
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		if next != "" {
			resp, err := http.Get(next + "/hop")
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		fmt.Fprintln(w, "hop")
	})
	go http.Serve(ln, mux)
	fmt.Printf("ready %s://%s\n", scheme, ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "wire":
			wire(arg)
		case "keepalive":
			send(&http.Client{Transport: kept}, "GET", arg+"/kept", nil, -1, nil)
		}
		fmt.Println("ok " + in.Text())
	}
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// pattern is a deterministic body of n bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// wire sends, on a fresh transport (so connections open after the agent
// attached), one request of each shape to base.
func wire(base string) {
	c := &http.Client{Transport: &http.Transport{}}
	// Three requests on one keep-alive connection.
	for i := 0; i < 3; i++ {
		send(c, "GET", fmt.Sprintf("%s/seq/%d", base, i), nil, -1, nil)
	}
	// Chunked: a body of unknown length.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 4; i++ {
			pw.Write(pattern(3000 + i))
			time.Sleep(5 * time.Millisecond)
		}
		pw.Close()
	}()
	send(c, "POST", base+"/chunked", pr, -1, nil)
	// Large: a 1 MiB body and a 6 KiB header, over several writes.
	send(c, "PUT", base+"/large", bytes.NewReader(pattern(1<<20)), 1<<20, http.Header{"X-Big": {string(pattern(6 << 10))}})
	// The program's own traceparent is never replaced or doubled.
	send(c, "GET", base+"/own", nil, -1, http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	// A request line longer than the socket program reads: sent unchanged.
	send(c, "GET", base+"/long?q="+string(pattern(3000)), nil, -1, nil)
	// Two pipelined requests in one write, on a connection of the
	// program's own (net/http's client never pipelines): no client span,
	// so nothing is added.
	pipelined(strings.TrimPrefix(base, "http://"))
}

func pipelined(addr string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer conn.Close()
	req := "GET /pipe/1 HTTP/1.1\r\nHost: " + addr + "\r\n\r\nGET /pipe/2 HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	r := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func send(c *http.Client, method, url string, body io.Reader, n int64, h http.Header) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	if n >= 0 {
		req.ContentLength = n
	} else if body != nil {
		req.ContentLength = -1
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

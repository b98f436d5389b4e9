// Command otelsdk is a service instrumented with the OpenTelemetry SDK of
// its own, for the tests of tcagent joining its traces: GET /order starts
// the program's span "order" from the request's context and, under it,
// calls GET /stock. The spans the program ends are written to the file
// named by $SPANS, one "name trace span parent" line each. On standard
// input, "call" requests /order over a connection of its own (no net/http
// client, so no client span and no trace context) and answers "ok call".
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// lines writes each ended span as a line.
type lines struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lines) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range spans {
		parent := "-"
		if s.Parent().IsValid() {
			parent = s.Parent().SpanID().String()
		}
		fmt.Fprintf(l.w, "%s %s %s %s\n", s.Name(), s.SpanContext().TraceID(), s.SpanContext().SpanID(), parent)
	}
	return nil
}

func (l *lines) Shutdown(context.Context) error { return nil }

func main() {
	out, err := os.Create(os.Getenv("SPANS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(&lines{w: out}))
	tracer := tp.Tracer("otelsdk")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	base := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/order", func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tracer.Start(r.Context(), "order")
		defer span.End()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stock", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		fmt.Fprintln(w, "ordered")
	})
	mux.HandleFunc("/stock", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "in stock")
	})
	go http.Serve(ln, mux)
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "call" {
			if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				fmt.Fprintf(conn, "GET /order HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", ln.Addr())
				io.Copy(io.Discard, conn)
				conn.Close()
			}
		}
		fmt.Println("ok " + in.Text())
	}
}

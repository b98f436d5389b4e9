// Command grpcfixture serves the gRPC health service on loopback and calls
// it, for the built-in gRPC tests: a unary OK, a unary NotFound, a server
// stream of 5 messages over 100 ms and a deadline exceeded. Like the main
// fixture, it answers "ok CMD" to each command on stdin.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// health answers Check for "" (serving), "slow" (never, until the deadline)
// and nothing else (NotFound); Watch sends 5 updates 20 ms apart.
type health struct {
	healthpb.UnimplementedHealthServer
}

func (health) Check(ctx context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	switch r.Service {
	case "":
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	case "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, status.Errorf(codes.NotFound, "unknown service %q", r.Service)
}

func (health) Watch(r *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error {
	for i := 0; i < 5; i++ {
		time.Sleep(20 * time.Millisecond)
		if err := s.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health{})
	go srv.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	client := healthpb.NewHealthClient(conn)
	ctx := context.Background()
	// Connect before the tests attach, so that they see calls only.
	client.Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		switch cmd {
		case "check":
			_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
		case "traced", "tracedbad":
			// A caller that sends W3C trace context in its metadata.
			tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			if cmd == "tracedbad" {
				tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
			}
			_, err = client.Check(metadata.AppendToOutgoingContext(ctx, "traceparent", tp), &healthpb.HealthCheckRequest{})
		case "unimplemented":
			// A method the server does not have: UNIMPLEMENTED, a code the
			// RPC conventions count as the server's failure.
			err = conn.Invoke(ctx, "/grpc.health.v1.Health/Nope", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
			if status.Code(err) == codes.Unimplemented {
				err = nil
			}
		case "notfound":
			_, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "missing"})
			if status.Code(err) == codes.NotFound {
				err = nil
			}
		case "watch":
			var w healthpb.Health_WatchClient
			if w, err = client.Watch(ctx, &healthpb.HealthCheckRequest{}); err == nil {
				n := 0
				for ; err == nil; n++ {
					_, err = w.Recv()
				}
				if err == io.EOF && n == 6 {
					err = nil
				}
			}
		case "deadline":
			dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			_, err = client.Check(dctx, &healthpb.HealthCheckRequest{Service: "slow"})
			cancel()
			if status.Code(err) == codes.DeadlineExceeded {
				err = nil
			}
			time.Sleep(20 * time.Millisecond) // the server's side ends too
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, cmd+":", err)
			os.Exit(1)
		}
		fmt.Println("ok " + cmd)
	}
}

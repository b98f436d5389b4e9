// Command reference links in grpc-go the way the grpc built-in probes read
// it (a server, a unary call and a stream), so that offsetgen can read its
// struct layouts, and those of the genproto status it carries, from DWARF.
// The offsets tool writes its go.mod for each grpc release; it is built,
// never run.
package main

import (
	"context"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	if len(os.Args) < 42 { // never: only keeps server and client linked in
		return
	}
	ln, _ := net.Listen("tcp", os.Args[1])
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, healthpb.UnimplementedHealthServer{})
	go srv.Serve(ln)
	conn, _ := grpc.NewClient(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	c := healthpb.NewHealthClient(conn)
	c.Check(context.Background(), &healthpb.HealthCheckRequest{})
	c.Watch(context.Background(), &healthpb.HealthCheckRequest{})
}

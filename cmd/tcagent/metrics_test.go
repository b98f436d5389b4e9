package main

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	tcprom "github.com/tcagent/tcagent/exporter/prometheus"
)

// TestServeMetricsTakenAddress: a taken default address is said once and
// served elsewhere; a taken address the user gave is an error.
func TestServeMetricsTakenAddress(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var logs strings.Builder
	pl := &pipeline{metrics: tcprom.New(0), log: slog.New(slog.NewTextHandler(&logs, nil))}
	got, err := pl.serveMetrics(ctx, addr, false)
	if err != nil || got == "" || got == addr {
		t.Fatalf("default taken: served on %q, %v; want another address", got, err)
	}
	if n := strings.Count(logs.String(), "default metrics address unavailable"); n != 1 || !strings.Contains(logs.String(), "metrics="+got) {
		t.Errorf("warnings:\n%s\nwant one naming %s", logs.String(), got)
	}

	logs.Reset()
	got, err = pl.serveMetrics(ctx, addr, true)
	if err == nil || got != "" || !strings.Contains(err.Error(), "--metrics-addr "+addr) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("explicit taken: %q, %v; want a one-line error naming the flag", got, err)
	}
	if logs.Len() != 0 {
		t.Errorf("an explicit address that failed also warned: %s", logs.String())
	}
}

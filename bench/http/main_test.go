package main

import (
	"strings"
	"testing"
)

const wrkReport = `Running 5s test @ http://127.0.0.1:40123/
  2 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   210.12us  301.55us   9.87ms   93.10%
    Req/Sec    53.01k     4.12k   60.22k    71.00%
  527456 requests in 5.00s, 63.88MB read
Requests/sec: 105491.20
Transfer/sec:     12.78MB
`

func TestParseWrk(t *testing.T) {
	n, err := parseWrk([]byte(wrkReport))
	if err != nil || n != 527456 {
		t.Fatalf("parseWrk = %d, %v; want 527456", n, err)
	}
	for name, out := range map[string]string{
		"socket errors": strings.Replace(wrkReport, "Requests/sec", "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec", 1),
		"non-2xx":       strings.Replace(wrkReport, "Requests/sec", "  Non-2xx or 3xx responses: 12\nRequests/sec", 1),
		"no count":      "unable to connect to 127.0.0.1:1 Connection refused\n",
		"none done":     strings.Replace(wrkReport, "527456 requests", "0 requests", 1),
	} {
		if n, err := parseWrk([]byte(out)); err == nil {
			t.Errorf("%s: parseWrk = %d, nil; want an error", name, n)
		}
	}
}

func TestMedian(t *testing.T) {
	id := func(f float64) float64 { return f }
	if m := median([]float64{3, 1, 2}, id); m != 2 {
		t.Errorf("median(3,1,2) = %v", m)
	}
	if m := median([]float64{26827, 15725, 23159}, id); m != 23159 {
		t.Errorf("median of the recorded rounds = %v", m)
	}
}

func TestWithBefore(t *testing.T) {
	modes := []mode{{"untraced", nil, ""}, {"traced", []string{"--builtin", "http"}, ""}}
	if got := withBefore(modes, ""); len(got) != 2 {
		t.Fatalf("without -before: %d modes, want 2", len(got))
	}
	got := withBefore(modes, "/tmp/old-tcagent")
	if len(got) != 3 || got[2].name != "traced (before)" || got[2].agentOf("new") != "/tmp/old-tcagent" || got[1].agentOf("new") != "new" || got[2].args[1] != "http" {
		t.Fatalf("with -before: %+v, want the traced mode again run by the old agent", got)
	}
}

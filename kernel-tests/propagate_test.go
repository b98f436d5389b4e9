package kerneltests

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hop is a running chain fixture: one service of a chain.
type hop struct {
	*target
	url string
}

// startHop starts the chain fixture at path; its /hop calls next's, if any.
func startHop(t *testing.T, path, next string, env ...string) *hop {
	t.Helper()
	var args []string
	if next != "" {
		args = []string{next}
	}
	tg, line := startProcess(t, path, args, env)
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if !ok {
		t.Fatalf("chain fixture did not start: %q", line)
	}
	return &hop{target: tg, url: url}
}

// cliAgent is a running `tcagent attach`.
type cliAgent struct {
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	metrics string // the endpoint's address
}

// startCLI runs `tcagent attach` on pids with args, and waits until every
// process is attached.
func startCLI(t *testing.T, pids []int, args ...string) *cliAgent {
	t.Helper()
	var ps []string
	for _, p := range pids {
		ps = append(ps, strconv.Itoa(p))
	}
	a := &cliAgent{}
	a.cmd = exec.Command(tcagent(t), append([]string{"attach", "--pid", strings.Join(ps, ","), "--exporter", "jsonl",
		"--builtin", "http", "--metrics-addr", "127.0.0.1:0"}, args...)...)
	a.cmd.Stdout = &a.stdout
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cmd.Process.Kill(); a.cmd.Wait() })
	attached := make(chan string, len(pids))
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		logs := bufio.NewScanner(stderr)
		for logs.Scan() {
			line := logs.Text()
			if strings.Contains(line, "msg=attached") {
				attached <- line
			} else if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || !strings.Contains(line, "level=") {
				t.Logf("tcagent: %s", line)
			}
		}
	}()
	for range pids {
		select {
		case line := <-attached:
			if m := regexp.MustCompile(`metrics=(\S+)`).FindStringSubmatch(line); m != nil {
				a.metrics = m[1]
			}
		case <-exited:
			t.Fatal("tcagent exited before attaching")
		case <-time.After(30 * time.Second):
			t.Fatal("not every process attached within 30s")
		}
	}
	return a
}

// stop ends the agent with SIGINT and returns its spans by span id.
func (a *cliAgent) stop(t *testing.T) map[string]map[string]any {
	t.Helper()
	// On SIGINT the agent detaches and drains the ring buffer: no wait for
	// its poll.
	a.cmd.Process.Signal(syscall.SIGINT)
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("tcagent exited with %v, want 0", err)
	}
	spans := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(a.stdout.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		spans[m["span_id"].(string)] = m
	}
	return spans
}

// settled reads a metric until it equals want, and returns its value: want
// once it got there, else the last value read after a generous deadline (the
// processes' counts are published once a second).
func (a *cliAgent) settled(t *testing.T, want float64, name string, labels ...string) float64 {
	t.Helper()
	v, _ := a.scrapeWhen(t, want, name, labels...)
	return v
}

// scrapeWhen scrapes until name equals want (or a generous deadline passes)
// and returns the value and that whole scrape, so that other counters can be
// read from the same published snapshot.
func (a *cliAgent) scrapeWhen(t *testing.T, want float64, name string, labels ...string) (float64, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body := scrapeBody(t, a.metrics)
		v, found := sampleFound(t, body, name, labels...)
		if found && v == want || time.Now().After(deadline) {
			return v, body
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric reads the sum of the series of name whose labels include every
// one in labels.
func (a *cliAgent) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return scrape(t, a.metrics, name, labels...)
}

func pidOf(s map[string]any) int {
	return int(s["resource"].(map[string]any)["process.pid"].(float64))
}

// TestPropagateChain: three services calling each other over loopback, all
// traced by one agent with --propagate, make one trace: each hop's server
// span is the child of the previous hop's client span, the header carrying
// it.
func TestPropagateChain(t *testing.T) {
	forEachBuildOf(t, "chain", func(t *testing.T, b build) {
		ag, a, bh, c := runChain(t, b)
		if n := ag.settled(t, 4, "tcagent_propagation_socket_total", `outcome="injected"`); n != 4 {
			t.Errorf("%v requests injected, want 4", n)
		}
		// A zero read at once proves nothing (the counts are a snapshot
		// published once a second): read it from the first snapshot that
		// counts every request handed to the socket, the fourth of which
		// was sent after three of the four server spans that could have
		// been matched had started.
		handed, snap := ag.scrapeWhen(t, 4, "tcagent_propagation_requests_total", `outcome="handed"`)
		if handed != 4 {
			t.Errorf("%v requests handed to the socket, want 4", handed)
		}
		if n := sample(t, snap, "tcagent_propagation_matched_total"); n != 0 {
			t.Errorf("%v server spans matched by connection, want none: the header told them", n)
		}
		checkChain(t, ag.stop(t), a, bh, c)
	})
}

// TestPropagateTLS: the same chain over TLS (HTTP/1.1), where no header can
// be added: each hop's server span still finds its parent, the client span
// that sent the request, by the connection, with nothing written.
func TestPropagateTLS(t *testing.T) {
	forEachBuildOf(t, "chain", func(t *testing.T, b build) {
		ag, a, bh, c := runChain(t, b, "CHAIN_TLS=1")
		if n := ag.settled(t, 4, "tcagent_propagation_matched_total"); n != 4 {
			t.Errorf("%v server spans matched by connection, want 4", n)
		}
		if n := ag.settled(t, 4, "tcagent_propagation_requests_total", `outcome="tls"`); n != 4 {
			t.Errorf("%v requests counted as TLS, want 4", n)
		}
		if n := ag.metric(t, "tcagent_propagation_socket_total", `outcome="injected"`); n != 0 {
			t.Errorf("%v TLS requests injected", n)
		}
		checkChain(t, ag.stop(t), a, bh, c)
	})
}

// runChain starts three services of build b, A calling B calling C, traces
// them with one agent with --propagate, and sends A two requests from an
// untraced client.
func runChain(t *testing.T, b build, env ...string) (ag *cliAgent, a, bh, c *hop) {
	t.Helper()
	c = startHop(t, b.path, "", env...)
	bh = startHop(t, b.path, c.url, env...)
	a = startHop(t, b.path, bh.url, env...)
	ag = startCLI(t, []int{a.pid(), bh.pid(), c.pid()}, "--propagate")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	// Twice: the second request reuses each hop's keep-alive connection.
	for i := 0; i < 2; i++ {
		resp, err := client.Get(a.url + "/hop")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return ag, a, bh, c
}

// checkChain walks each request's trace from its root, A's server span: A's
// client span, B's server and client spans, C's server span, each the
// child of the one before, all in one trace; two requests, two traces.
func checkChain(t *testing.T, spans map[string]map[string]any, a, bh, c *hop) {
	t.Helper()
	var roots []map[string]any
	for _, s := range spans {
		if pidOf(s) == a.pid() && s["kind"] == "server" {
			roots = append(roots, s)
		}
	}
	if len(roots) != 2 || len(spans) != 10 {
		t.Fatalf("%d spans, %d server spans of the first service; want 10 and 2", len(spans), len(roots))
	}
	children := map[string][]map[string]any{}
	for _, s := range spans {
		children[s["parent_span_id"].(string)] = append(children[s["parent_span_id"].(string)], s)
	}
	for _, root := range roots {
		if root["parent_span_id"] != "" {
			t.Errorf("the first service's server span has a parent: %v", root)
		}
		want := []struct {
			pid  int
			kind string
		}{{a.pid(), "client"}, {bh.pid(), "server"}, {bh.pid(), "client"}, {c.pid(), "server"}}
		cur := root
		for i, w := range want {
			kids := children[cur["span_id"].(string)]
			if len(kids) != 1 {
				t.Fatalf("hop %d: span %v has %d children, want 1", i, cur["name"], len(kids))
			}
			next := kids[0]
			if pidOf(next) != w.pid || next["kind"] != w.kind {
				t.Fatalf("hop %d: child is a %v span of pid %v, want a %s span of pid %d", i, next["kind"], pidOf(next), w.kind, w.pid)
			}
			if next["trace_id"] != root["trace_id"] {
				t.Errorf("hop %d: trace %v, want %v", i, next["trace_id"], root["trace_id"])
			}
			cur = next
		}
	}
	if roots[0]["trace_id"] == roots[1]["trace_id"] {
		t.Error("two requests share one trace")
	}
}

// capture is a raw HTTP/1 server that records the bytes of each request as
// they arrived, by path.
type capture struct {
	ln  net.Listener
	url string
	mu  sync.Mutex
	raw map[string][]byte
}

func startCapture(t *testing.T) *capture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{ln: ln, url: "http://" + ln.Addr().String(), raw: map[string][]byte{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go c.serve(conn)
		}
	}()
	return c
}

// serve reads requests one at a time: clients wait for each response, so
// every byte read before a response belongs to the request it answers.
func (c *capture) serve(conn net.Conn) {
	defer conn.Close()
	var rec bytes.Buffer
	r := bufio.NewReader(io.TeeReader(conn, &rec))
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		raw := append([]byte(nil), rec.Bytes()[:rec.Len()-r.Buffered()]...)
		rec.Next(rec.Len() - r.Buffered())
		c.mu.Lock()
		c.raw[req.URL.Path] = raw
		c.mu.Unlock()
		fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

// take returns and forgets what was recorded.
func (c *capture) take() map[string][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.raw
	c.raw = map[string][]byte{}
	return r
}

var traceparentLine = regexp.MustCompile(`^traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-01\r\n`)

// TestPropagateWire captures what a traced client sends with --propagate:
// each request carries the header exactly once, right after its request
// line, with its client span's ids, and is otherwise byte for byte what the
// program sent before the agent attached — sequential requests on one
// connection, chunked and large bodies alike; the program's own traceparent,
// a request line too long to read, and a connection opened before the agent
// attached are left alone and counted, and pipelined requests the program
// writes on a connection of its own pass untouched.
func TestPropagateWire(t *testing.T) {
	forEachBuildOf(t, "chain", func(t *testing.T, b build) {
		srv := startCapture(t)
		h := startHop(t, b.path, "")
		h.run(t, "keepalive "+srv.url) // opens the connection that predates the agent
		h.run(t, "wire "+srv.url)
		before := srv.take()
		ag := startCLI(t, []int{h.pid()}, "--propagate")
		h.run(t, "wire "+srv.url)
		h.run(t, "keepalive "+srv.url)
		present := ag.settled(t, 1, "tcagent_propagation_requests_total", `outcome="traceparent_present"`)
		predates := ag.settled(t, 1, "tcagent_propagation_requests_total", `outcome="connection_predates_agent"`)
		injected := ag.settled(t, 5, "tcagent_propagation_socket_total", `outcome="injected"`)
		notHTTP1 := ag.settled(t, 1, "tcagent_propagation_socket_total", `outcome="not_http1"`)
		spans := ag.stop(t)
		after := srv.take()

		clients := map[string]map[string]any{} // by path
		for _, s := range spans {
			if s["kind"] == "client" {
				u := s["attributes"].(map[string]any)["url.full"].(string)
				clients[strings.TrimPrefix(u, srv.url)] = s
			}
		}
		for _, path := range []string{"/seq/0", "/seq/1", "/seq/2", "/chunked", "/large", "/own", "/long", "/kept", "/pipe/1", "/pipe/2"} {
			got, want := after[path], before[path]
			if len(want) == 0 || len(got) == 0 {
				t.Errorf("%s: not captured (before %d bytes, after %d)", path, len(want), len(got))
				continue
			}
			injectedHere := strings.HasPrefix(path, "/seq/") || path == "/chunked" || path == "/large"
			if !injectedHere {
				if !bytes.Equal(got, want) {
					t.Errorf("%s: changed on the wire:\n%q\nwant\n%q", path, clip(got), clip(want))
				}
				continue
			}
			eol := bytes.Index(got, []byte("\r\n")) + 2
			m := traceparentLine.FindSubmatch(got[eol:])
			if m == nil {
				t.Errorf("%s: no traceparent after the request line:\n%q", path, clip(got))
				continue
			}
			if n := bytes.Count(bytes.ToLower(got), []byte("traceparent:")); n != 1 {
				t.Errorf("%s: %d traceparent headers", path, n)
			}
			rest := append(append([]byte(nil), got[:eol]...), got[eol+len(m[0]):]...)
			if !bytes.Equal(rest, want) {
				t.Errorf("%s: apart from the header, %d bytes differ from what the program sent untraced (%d bytes)", path, len(rest), len(want))
			}
			span := clients[strings.SplitN(path, "?", 2)[0]]
			if span == nil {
				t.Errorf("%s: no client span", path)
			} else if string(m[1]) != span["trace_id"] || string(m[2]) != span["span_id"] {
				t.Errorf("%s: header carries %s/%s, the client span is %v/%v", path, m[1], m[2], span["trace_id"], span["span_id"])
			}
		}
		if present != 1 || predates != 1 || notHTTP1 != 1 || injected != 5 {
			t.Errorf("counted %v traceparent_present, %v connection_predates_agent, %v not_http1, %v injected; want 1, 1, 1, 5",
				present, predates, notHTTP1, injected)
		}
		// The program is unharmed.
		h.run(t, "wire "+srv.url)
	})
}

// TestPropagateSampling: with a ratio sampler, the sampled flag a request
// carries out is the decision taken for its client span: 01 when the span
// was recorded, 00 when it was not.
func TestPropagateSampling(t *testing.T) {
	b := newestOf(t, "chain")
	srv := startCapture(t)
	h := startHop(t, b.path, "")
	ag := startCLI(t, []int{h.pid()}, "--propagate", "--sampler", "traceidratio", "--sampler-arg", "0.5")
	any := regexp.MustCompile(`traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])\r\n`)
	raw := map[string][]byte{} // by run and path
	seen := map[string]int{}
	// Until both decisions were carried: the ids are random, so a few runs
	// may all go one way; 64 runs all alike happen once in 2^63.
	for i := 0; i < 64 && (seen["00"] == 0 || seen["01"] == 0); i++ {
		h.run(t, "wire "+srv.url)
		for k, v := range srv.take() {
			raw[fmt.Sprint(i)+k] = v
			if m := any.FindSubmatch(v); m != nil {
				seen[string(m[3])]++
			}
		}
	}
	if seen["00"] == 0 || seen["01"] == 0 {
		t.Errorf("flags carried: %v; with ratio 0.5 both sampled (01) and unsampled (00) requests must go out", seen)
	}
	spans := ag.stop(t)
	for path, r := range raw {
		m := any.FindSubmatch(r)
		if m == nil {
			continue
		}
		_, recorded := spans[string(m[2])]
		if recorded != (string(m[3]) == "01") {
			t.Errorf("%s: flags %s, but the client span was recorded: %v", path, m[3], recorded)
		}
	}
}

// clip shortens a capture for a message.
func clip(b []byte) []byte {
	if len(b) > 300 {
		return b[:300]
	}
	return b
}

// TestIncomingFromCurl: without --propagate, a plain client's traceparent
// (curl's) is continued, and nothing is added to the requests the service
// sends on.
func TestIncomingFromCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed (apt-get install curl): scripts/test-setup.sh installs it")
	}
	b := newestOf(t, "chain")
	srv := startCapture(t)
	h := startHop(t, b.path, srv.url)
	ag := startCLI(t, []int{h.pid()})
	out, err := exec.Command("curl", "-sS", "-H", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", h.url+"/hop").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	spans := ag.stop(t)
	var server, client map[string]any
	for _, s := range spans {
		switch s["kind"] {
		case "server":
			server = s
		case "client":
			client = s
		}
	}
	if server == nil || client == nil {
		t.Fatalf("spans %v", spans)
	}
	if server["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || server["parent_span_id"] != "00f067aa0ba902b7" {
		t.Errorf("server span %v/%v did not continue curl's trace", server["trace_id"], server["parent_span_id"])
	}
	if client["trace_id"] != server["trace_id"] || client["parent_span_id"] != server["span_id"] {
		t.Errorf("client span not the server span's child")
	}
	if raw := srv.take()["/hop"]; raw == nil || bytes.Contains(bytes.ToLower(raw), []byte("traceparent")) {
		t.Errorf("without --propagate the outgoing request changed: %q", raw)
	}
}

// newestOf returns a fixture built by the newest Go, with symbols.
func newestOf(t *testing.T, dir string) build {
	t.Helper()
	bs := fixturesOf(t, dir)
	for i := len(bs) - 1; i >= 0; i-- {
		if bs[i].release == toolchains[len(toolchains)-1].release && !bs[i].stripped {
			return bs[i]
		}
	}
	t.Fatal("no such build")
	return build{}
}

// TestCLIRunPropagate: `tcagent run --propagate` traces a program from its
// start with the socket side in place: the request it sends to itself
// carries its client span, and the server span continues it.
func TestCLIRunPropagate(t *testing.T) {
	b := newestOf(t, "otelsdk")
	cmd := exec.Command(tcagent(t), "run", "--propagate", "--builtin", "http", "--exporter", "jsonl", "--metrics-addr", "", "--", b.path)
	cmd.Env = append(os.Environ(), "SPANS="+filepath.Join(t.TempDir(), "spans"))
	cmd.Stdin = strings.NewReader("call\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tcagent run: %v\n%s", err, stderr.String())
	}
	var server, client, stock map[string]any
	for _, line := range strings.Split(stdout.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the program's own output
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		switch a := m["attributes"].(map[string]any); {
		case m["kind"] == "server" && a["url.path"] == "/order":
			server = m
		case m["kind"] == "server" && a["url.path"] == "/stock":
			stock = m
		case m["kind"] == "client":
			client = m
		}
	}
	if server == nil || client == nil || stock == nil {
		t.Fatalf("spans:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	if client["parent_span_id"] != server["span_id"] || stock["parent_span_id"] != client["span_id"] ||
		stock["trace_id"] != server["trace_id"] || client["trace_id"] != server["trace_id"] {
		t.Errorf("not one trace: server %v/%v, client %v/%v parent %v, stock %v parent %v", server["trace_id"], server["span_id"],
			client["trace_id"], client["span_id"], client["parent_span_id"], stock["trace_id"], stock["parent_span_id"])
	}
}

// Command offsetgen writes probes/builtin/offsets_table.go: the offsets of
// the struct fields tcagent's built-in probes read, for every Go release it
// supports, taken from the DWARF of a reference program built by each; and
// probes/goffsets_table.go: runtime.g's offsets every probe needs. Both are
// used for binaries without DWARF. Run it with `make offsets`; it fetches
// each toolchain through the module proxy.
package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"flag"
	"fmt"
	"go/format"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tcagent/tcagent/internal/gotoolchain"
	"github.com/tcagent/tcagent/probes/builtin"
)

// releases are the newest patch of each supported release.
var releases = []string{"go1.19.13", "go1.20.14", "go1.21.13", "go1.22.12", "go1.23.12", "go1.24.13", "go1.25.8", "go1.26.8", "go1.27.3"}

// gFields are runtime.g's fields every probe reads (g.stack.hi is g.stack
// plus runtime.stack.hi); parentGoid is absent before Go 1.21.
var gFields = []string{"runtime.g.goid", "runtime.g.parentGoid", "runtime.g.stack", "runtime.stack.hi"}

// fields are the struct fields the built-ins read, as "package.Type.Field".
var fields = []string{
	"net/http.Request.Method", "net/http.Request.URL", "net/http.Request.Header", "net/http.Request.ProtoMajor", "net/http.Request.ProtoMinor",
	"net/http.Request.Host", "net/http.Request.RemoteAddr", "net/http.Request.TLS", "net/http.Request.Pattern",
	"net/http.Request.pat", "net/http.pattern.str",
	"net/url.URL.Scheme", "net/url.URL.Host", "net/url.URL.Path",
	"net/http.response.status", "net/http.Response.StatusCode",
	"net/http.http2responseWriter.rws", "net/http.http2responseWriterState.status",
	// Go 1.27 moved HTTP/2 to net/http/internal/http2.
	"net/http/internal/http2.responseWriter.rws", "net/http/internal/http2.responseWriterState.status",
	"net.TCPAddr.IP", "net.TCPAddr.Port",
	// --propagate: a request's connection, and the ports it is keyed by.
	"net/http.persistConn.conn", "net/http.persistConn.tlsState", "net/http.transportRequest.Request",
	"net.conn.fd", "net.netFD.laddr", "net.netFD.raddr",
	// and the connection of a request served, and under TLS the TCP one.
	"net/http.response.conn", "net/http.conn.rwc", "crypto/tls.Conn.conn",
	// grpc's incoming metadata: the value of the stream's context.
	"context.valueCtx.key", "context.valueCtx.val",
	"database/sql.DB.connector", "database/sql.dsnConnector.driver", "database/sql.Tx.db", "database/sql.Conn.db",
	// (*Tx).rollback reads whether the transaction is already done (atomic.Bool;
	// an int32 before Go 1.20).
	"database/sql.Tx.done",
}

type module struct {
	path, ref, oldest string
	fields            []string
}

// modules are the third-party modules the built-ins read, each with a
// reference program (tools/offsetgen/testdata/reference-NAME), the oldest
// release supported and the fields read. A field may belong to a module the
// main one requires (grpc's genproto status): it is recorded under that
// module's version as linked into the reference program.
var modules = []module{
	{"github.com/redis/go-redis/v9", "reference-redis", "v9.0.0", []string{
		"github.com/redis/go-redis/v9.baseCmd.args", "github.com/redis/go-redis/v9.baseClient.opt",
		"github.com/redis/go-redis/v9.Options.Addr",
	}},
	// The OpenTelemetry SDK's releases of the last two years (from October
	// 2024): the span its tracer starts, and the trace module's SpanContext.
	{"go.opentelemetry.io/otel/sdk", "reference-otel", "v1.31.0", []string{
		"go.opentelemetry.io/otel/sdk/trace.recordingSpan.spanContext", "go.opentelemetry.io/otel/sdk/trace.recordingSpan.parent",
		"go.opentelemetry.io/otel/trace.SpanContext.traceID", "go.opentelemetry.io/otel/trace.SpanContext.spanID",
		"go.opentelemetry.io/otel/trace.SpanContext.traceFlags",
	}},
	// grpc releases of the last two years (from November 2024).
	{"google.golang.org/grpc", "reference-grpc", "v1.68.0", []string{
		"google.golang.org/grpc/internal/transport.Stream.method", "google.golang.org/grpc/internal/transport.Stream.ctx", "google.golang.org/grpc/internal/transport.ServerStream.Stream",
		"google.golang.org/grpc/internal/transport.ServerStream.st", "google.golang.org/grpc.clientStreamWrapper.ClientStream",
		"google.golang.org/grpc/internal/transport.http2Server.peer", "google.golang.org/grpc/peer.Peer.LocalAddr",
		"google.golang.org/grpc/internal/status.Status.s", "google.golang.org/grpc/internal/status.Error.s",
		"google.golang.org/grpc.ClientConn.target", "google.golang.org/grpc.StreamDesc.ServerStreams", "google.golang.org/grpc.StreamDesc.ClientStreams",
		"google.golang.org/genproto/googleapis/rpc/status.Status.Code", "google.golang.org/genproto/googleapis/rpc/status.Status.Message",
	}},
	// The routers of the routes set, each from the oldest release the
	// proxy serves here (gorilla/mux from v1.7.4, which added
	// requestWithRoute).
	{"github.com/gin-gonic/gin", "reference-gin", "v1.7.7", []string{"github.com/gin-gonic/gin.Context.fullPath"}},
	{"github.com/go-chi/chi/v5", "reference-chi", "v5.2.3", []string{
		"github.com/go-chi/chi/v5.Context.RoutePatterns", "github.com/go-chi/chi/v5.Context.routePattern",
	}},
	{"github.com/labstack/echo/v4", "reference-echo", "v4.13.4", []string{"github.com/labstack/echo/v4.context.path"}},
	{"github.com/labstack/echo/v5", "reference-echo5", "v5.3.1", []string{"github.com/labstack/echo/v5.Context.path"}},
	{"github.com/gorilla/mux", "reference-mux", "v1.7.4", []string{
		"github.com/gorilla/mux.Route.routeConf", "github.com/gorilla/mux.routeConf.regexp",
		"github.com/gorilla/mux.routeRegexpGroup.path", "github.com/gorilla/mux.routeRegexp.template",
	}},
	// kafka-go releases from v0.4.42 (June 2023), the first of the Reader
	// and Writer as they are now, and sarama's from v1.50.1.
	{"github.com/segmentio/kafka-go", "reference-kafkago", "v0.4.42", []string{
		"github.com/segmentio/kafka-go.Writer.Topic", "github.com/segmentio/kafka-go.Reader.config", "github.com/segmentio/kafka-go.ReaderConfig.Topic",
		"github.com/segmentio/kafka-go.ReaderConfig.GroupID",
		"github.com/segmentio/kafka-go.Message.Topic", "github.com/segmentio/kafka-go.Message.Partition", "github.com/segmentio/kafka-go.Message.Offset",
		"github.com/segmentio/kafka-go.Message.Key", "github.com/segmentio/kafka-go.Message.Headers", "github.com/segmentio/kafka-go/protocol.Header.Value",
	}},
	{"github.com/IBM/sarama", "reference-sarama", "v1.50.1", []string{
		"github.com/IBM/sarama.ProducerMessage.Topic", "github.com/IBM/sarama.ProducerMessage.Key",
		"github.com/IBM/sarama.ConsumerMessage.Headers", "github.com/IBM/sarama.ConsumerMessage.Key", "github.com/IBM/sarama.ConsumerMessage.Topic",
		"github.com/IBM/sarama.ConsumerMessage.Partition", "github.com/IBM/sarama.ConsumerMessage.Offset", "github.com/IBM/sarama.RecordHeader.Value",
		"github.com/IBM/sarama.partitionConsumer.messages",
	}},
	// The MongoDB drivers, v1 and v2 (two modules): the releases served
	// from v1.17.2 and v2.8.0 on.
	{"go.mongodb.org/mongo-driver", "reference-mongo", "v1.17.2", mongoFields("go.mongodb.org/mongo-driver")},
	{"go.mongodb.org/mongo-driver/v2", "reference-mongov2", "v2.8.0", mongoFields("go.mongodb.org/mongo-driver/v2")},
}

// mongoFields are the fields the mongo set reads in a driver module: an
// operation's database, the server's code and message in the errors the
// driver returns, a connection's address, a cursor's state, and
// RunCommand's result.
func mongoFields(mod string) []string {
	var out []string
	for _, f := range []string{"x/mongo/driver.Operation.Database", "x/mongo/driver.Error.Code", "x/mongo/driver.Error.Message",
		"x/mongo/driver.WriteCommandError.WriteErrors", "x/mongo/driver.WriteError.Code", "x/mongo/driver.WriteError.Message",
		"x/mongo/driver/topology.connection.addr",
		"x/mongo/driver.BatchCursor.id", "x/mongo/driver.BatchCursor.err", "x/mongo/driver.BatchCursor.limit",
		"x/mongo/driver.BatchCursor.numReturned", "x/mongo/driver.BatchCursor.batchSize",
		"mongo.SingleResult.err", "mongo.CommandError.Code", "mongo.CommandError.Message"} {
		out = append(out, mod+"/"+f)
	}
	return out
}

func main() {
	out := flag.String("o", "probes/builtin/offsets_table.go", "output file")
	gOut := flag.String("g", "probes/goffsets_table.go", "output file of runtime.g's offsets")
	keepModules := flag.Bool("keep-modules", false, "keep the committed module table instead of building every module release again (it does not depend on the Go release)")
	only := flag.String("modules", "", "build the releases of these modules only (comma-separated paths offsetgen lists), keeping every other committed table")
	flag.Parse()
	table := map[string]map[string]int64{}
	dir, err := os.MkdirTemp("", "offsetgen-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	if *only != "" {
		moduleTable, err := moduleOnly(dir, strings.Split(*only, ","))
		if err != nil {
			fail(err)
		}
		for _, r := range builtin.TableReleases() {
			table[r] = builtin.TableOffsets(r)
		}
		if err := writeTables(*out, table, moduleTable); err != nil {
			fail(err)
		}
		return
	}
	gTable := map[string]map[string]int64{}
	for _, rel := range releases {
		bin := filepath.Join(dir, rel)
		if err := buildWith(rel, "tools/offsetgen/reference", bin, dir); err != nil {
			fail(err)
		}
		offs, err := read(bin, fields)
		if err != nil {
			fail(fmt.Errorf("%s: %w", rel, err))
		}
		release := rel[:strings.LastIndex(rel, ".")]
		table[release] = offs
		if gTable[release], err = read(bin, gFields); err != nil {
			fail(fmt.Errorf("%s: %w", rel, err))
		}
		if err := sameOnARM64(rel, "tools/offsetgen/reference", bin+"-arm64", dir, offs, gTable[release]); err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "%s: %d fields\n", rel, len(offs))
	}
	if err := writeGTable(*gOut, gTable); err != nil {
		fail(err)
	}
	moduleTable := builtin.ModuleTable()
	if !*keepModules {
		if moduleTable, err = moduleOffsets(dir, modules); err != nil {
			fail(err)
		}
	}
	if err := writeTables(*out, table, moduleTable); err != nil {
		fail(err)
	}
}

// sameOnARM64 builds the reference program (src) with release rel for arm64
// into bin and checks that its DWARF gives the offsets an x86-64 build
// gave (offs, g): the tables come from x86-64 builds and serve arm64
// programs too, which holds only while no release lays out a tabled field
// differently there.
func sameOnARM64(rel, src, bin, dir string, offs, g map[string]int64) error {
	if prev, ok := os.LookupEnv("GOARCH"); ok {
		defer os.Setenv("GOARCH", prev)
	} else {
		defer os.Unsetenv("GOARCH")
	}
	os.Setenv("GOARCH", "arm64")
	if err := buildWith(rel, src, bin, dir); err != nil {
		return fmt.Errorf("%s for arm64: %w", rel, err)
	}
	got, err := read(bin, fields)
	if err != nil {
		return fmt.Errorf("%s for arm64: %w", rel, err)
	}
	gotG, err := read(bin, gFields)
	if err != nil {
		return fmt.Errorf("%s for arm64: %w", rel, err)
	}
	var diff []string
	for _, p := range [][2]map[string]int64{{offs, got}, {g, gotG}} {
		for _, f := range slices.Sorted(maps.Keys(mergeKeys(p[0], p[1]))) {
			x86, ok1 := p[0][f]
			arm, ok2 := p[1][f]
			if x86 != arm || ok1 != ok2 {
				diff = append(diff, fmt.Sprintf("%s: %d (present %v) on x86-64, %d (present %v) on arm64", f, x86, ok1, arm, ok2))
			}
		}
	}
	if len(diff) > 0 {
		return fmt.Errorf("%s lays out tabled fields differently on arm64, so one table cannot serve both: %s", rel, strings.Join(diff, "; "))
	}
	return nil
}

// mergeKeys returns the set of a's and b's keys.
func mergeKeys(a, b map[string]int64) map[string]bool {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}

// moduleOnly builds the releases of the modules at paths only, and returns
// the committed module table with those modules' releases replaced.
func moduleOnly(dir string, paths []string) (map[string]map[string]int64, error) {
	var ms []module
	for _, path := range paths {
		i := slices.IndexFunc(modules, func(m module) bool { return m.path == path })
		if i < 0 {
			return nil, fmt.Errorf("no module %s in offsetgen's list", path)
		}
		ms = append(ms, modules[i])
	}
	built, err := moduleOffsets(dir, ms)
	if err != nil {
		return nil, err
	}
	table := builtin.ModuleTable()
	for k := range table {
		for _, path := range paths {
			if strings.HasPrefix(k, path+"@") {
				delete(table, k)
			}
		}
	}
	maps.Copy(table, built)
	return table, nil
}

// writeTables writes offsets_table.go: the Go releases' table and the
// modules'.
func writeTables(out string, table, moduleTable map[string]map[string]int64) error {
	var buf bytes.Buffer
	buf.WriteString("// Code generated by tools/offsetgen (make offsets); DO NOT EDIT.\n\npackage builtin\n\n")
	buf.WriteString("// offsetsTable holds, per Go release, the offsets of the fields the built-in\n// probes read, from the DWARF of a reference program built by that release.\n// A field missing from a release does not exist there.\n")
	buf.WriteString("var offsetsTable = map[string]map[string]int64{\n")
	var rels []string
	for r := range table {
		rels = append(rels, r)
	}
	sort.Slice(rels, func(i, j int) bool { return minor(rels[i]) < minor(rels[j]) })
	for _, r := range rels {
		fmt.Fprintf(&buf, "\t%q: {\n", r)
		var names []string
		for f := range table[r] {
			names = append(names, f)
		}
		sort.Strings(names)
		for _, f := range names {
			fmt.Fprintf(&buf, "\t\t%q: %d,\n", f, table[r][f])
		}
		buf.WriteString("\t},\n")
	}
	buf.WriteString("}\n\n")
	buf.WriteString("// moduleOffsetsTable holds, per module release (path@version), the offsets\n// of the fields the built-in probes read in it, from the DWARF of a\n// reference program built against that release.\n")
	writeTable(&buf, "moduleOffsetsTable", moduleTable)
	src, err := format.Source(buf.Bytes())
	if err != nil {
		return err
	}
	return os.WriteFile(out, src, 0o644)
}

// buildWith builds the program in src with toolchain (go1.N.P) into bin,
// with a module cache of its own under tmp.
func buildWith(toolchain, src, bin, tmp string) error {
	return gotoolchain.Build(toolchain, src, bin, filepath.Join(tmp, "modcache"), ".")
}

// writeGTable writes runtime.g's offsets per release as package probes
// wants them.
func writeGTable(file string, table map[string]map[string]int64) error {
	var buf bytes.Buffer
	buf.WriteString("// Code generated by tools/offsetgen (make offsets); DO NOT EDIT.\n\npackage probes\n\n")
	buf.WriteString("// gOffsets holds, per Go release, where runtime.g keeps its goroutine id,\n// its stack top (g.stack.hi) and its creator's id (parentGoid; 0: the\n// release has none), from the DWARF of a reference program built by that\n// release.\n")
	buf.WriteString("var gOffsets = map[string]struct{ goid, stackHi, parentGoid uint16 }{\n")
	var rels []string
	for r := range table {
		rels = append(rels, r)
	}
	sort.Slice(rels, func(i, j int) bool { return minor(rels[i]) < minor(rels[j]) })
	for _, r := range rels {
		t := table[r]
		goid, ok1 := t["runtime.g.goid"]
		stack, ok2 := t["runtime.g.stack"]
		hi, ok3 := t["runtime.stack.hi"]
		if !ok1 || !ok2 || !ok3 {
			return fmt.Errorf("%s: the reference program's DWARF lacks runtime.g's goid or stack.hi", r)
		}
		fmt.Fprintf(&buf, "\t%q: {%d, %d, %d},\n", r, goid, stack+hi, t["runtime.g.parentGoid"])
	}
	buf.WriteString("}\n")
	src, err := format.Source(buf.Bytes())
	if err != nil {
		return err
	}
	return os.WriteFile(file, src, 0o644)
}

// minor returns N of "go1.N".
func minor(release string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(release, "go1."))
	return n
}

// moduleOffsets builds each module's reference program against every
// release of the module (with the local Go) and reads its fields.
func moduleOffsets(dir string, modules []module) (map[string]map[string]int64, error) {
	table := map[string]map[string]int64{}
	for _, m := range modules {
		out, err := exec.Command("go", "list", "-m", "-versions", m.path).Output()
		if err != nil {
			return nil, fmt.Errorf("list %s releases: %w", m.path, err)
		}
		src, err := os.ReadFile(filepath.Join("tools/offsetgen/testdata", m.ref, "main.go"))
		if err != nil {
			return nil, err
		}
		for _, v := range strings.Fields(string(out))[1:] {
			if strings.Contains(v, "-") || older(v, m.oldest) {
				continue // pre-releases, and releases older than supported
			}
			work := filepath.Join(dir, m.ref+"-"+v)
			os.MkdirAll(work, 0o755)
			os.WriteFile(filepath.Join(work, "main.go"), src, 0o644)
			os.WriteFile(filepath.Join(work, "go.mod"), []byte("module reference\n\ngo 1.21\n\nrequire "+m.path+" "+v+"\n"), 0o644)
			run := func(args ...string) error {
				cmd := exec.Command("go", args...)
				cmd.Dir = work
				cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0", "GOTOOLCHAIN=local")
				if b, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("go %s for %s@%s: %v\n%s", args[0], m.path, v, err, b)
				}
				return nil
			}
			if err := run("mod", "tidy"); err != nil {
				return nil, err
			}
			if err := run("build", "-o", "ref", "."); err != nil {
				return nil, err
			}
			ref := filepath.Join(work, "ref")
			offs, err := read(ref, m.fields)
			if err != nil {
				return nil, fmt.Errorf("%s@%s: %w", m.path, v, err)
			}
			info, err := buildinfo.ReadFile(ref)
			if err != nil {
				return nil, err
			}
			for f, off := range offs {
				key := m.path + "@" + v
				if !strings.HasPrefix(f, m.path+".") && !strings.HasPrefix(f, m.path+"/") {
					key = ""
					for _, d := range info.Deps {
						if strings.HasPrefix(f, d.Path+".") || strings.HasPrefix(f, d.Path+"/") {
							key = d.Path + "@" + d.Version
						}
					}
					if key == "" {
						return nil, fmt.Errorf("%s@%s: no module of %s", m.path, v, f)
					}
				}
				if table[key] == nil {
					table[key] = map[string]int64{}
				}
				table[key][f] = off
			}
			fmt.Fprintf(os.Stderr, "%s@%s: %d fields\n", m.path, v, len(offs))
		}
	}
	return table, nil
}

// older reports whether release a (vX.Y.Z) comes before b.
func older(a, b string) bool {
	pa, pb := strings.Split(strings.TrimPrefix(a, "v"), "."), strings.Split(strings.TrimPrefix(b, "v"), ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x < y
		}
	}
	return len(pa) < len(pb)
}

func writeTable(buf *bytes.Buffer, name string, table map[string]map[string]int64) {
	fmt.Fprintf(buf, "var %s = map[string]map[string]int64{\n", name)
	var keys []string
	for k := range table {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(buf, "\t%q: {\n", k)
		var names []string
		for f := range table[k] {
			names = append(names, f)
		}
		sort.Strings(names)
		for _, f := range names {
			fmt.Fprintf(buf, "\t\t%q: %d,\n", f, table[k][f])
		}
		buf.WriteString("\t},\n")
	}
	buf.WriteString("}\n")
}

func read(bin string, fields []string) (map[string]int64, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return nil, err
	}
	want := map[string]map[string]bool{} // struct -> fields
	for _, fl := range fields {
		i := strings.LastIndex(fl, ".")
		if want[fl[:i]] == nil {
			want[fl[:i]] = map[string]bool{}
		}
		want[fl[:i]][fl[i+1:]] = true
	}
	offs := map[string]int64{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		fs := want[name]
		if e.Tag != dwarf.TagStructType || fs == nil || !e.Children {
			if e.Children && e.Tag != dwarf.TagCompileUnit {
				r.SkipChildren()
			}
			continue
		}
		delete(want, name)
		for {
			c, err := r.Next()
			if err != nil {
				return nil, err
			}
			if c == nil || c.Tag == 0 {
				break
			}
			fn, _ := c.Val(dwarf.AttrName).(string)
			if off, ok := c.Val(dwarf.AttrDataMemberLoc).(int64); ok && fs[fn] {
				offs[name+"."+fn] = off
			}
		}
	}
	return offs, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "offsetgen:", err)
	os.Exit(1)
}

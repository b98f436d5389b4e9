package kerneltests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/agent"
)

// startFerretDB runs the mongo set's test server (FerretDB over SQLite,
// built and cached by scripts/ferretdb.sh, which scripts/test-setup.sh
// runs) on a free loopback port, and returns its mongodb:// URI.
func startFerretDB(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../scripts/ferretdb.sh").Output()
	if err != nil {
		t.Fatalf("scripts/ferretdb.sh: %v", err)
	}
	cmd := exec.Command(strings.TrimSpace(string(out)), t.TempDir())
	stdin, err := cmd.StdinPipe() // closed at cleanup: the server stops
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	uri, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(uri, "mongodb://127.0.0.1:") {
		t.Fatalf("ferretdb printed %q, %v", uri, err)
	}
	return strings.TrimSpace(uri)
}

// mongoBuild is a mongo fixture build and the driver release it links.
type mongoBuild struct {
	build
	driver string
}

// mongoFixtures builds (once) the mongo fixture against the oldest and the
// newest release served of each driver: v1.17.2 (go.mod) with Go 1.22,
// v1.17.10 with Go 1.27; v2.8.0 with Go 1.22, v2.10.0 (which needs Go
// 1.25) with Go 1.27. Each normal and stripped, the Go 1.27 ones a stripped
// PIE too.
func mongoFixtures(t *testing.T) []mongoBuild {
	drivers := []string{"v1.17.2", "v1.17.10", "v2.8.0", "v2.10.0"}
	var out []mongoBuild
	for _, f := range moduleFixtures(t, "mongo", []moduleRelease{
		{release: "go1.22", toolchain: "go1.22.12", modfile: "go.mod", label: "mongov1.17.2"},
		{release: "go1.27", toolchain: "go1.27.3", modfile: "go.v11710.mod", label: "mongov1.17.10", pie: true},
		{release: "go1.22", toolchain: "go1.22.12", modfile: "go.v28.mod", label: "mongov2.8.0", args: []string{"-tags=mongov2"}},
		{release: "go1.27", toolchain: "go1.27.3", modfile: "go.v210.mod", label: "mongov2.10.0", args: []string{"-tags=mongov2"}, pie: true},
	}) {
		out = append(out, mongoBuild{f.build, drivers[f.of]})
	}
	return out
}

// TestBuiltinMongo traces the MongoDB drivers, v1 and v2, against a real
// server: a client span per operation, named by its command and
// collection, with db.query.text sanitized (the values the program sent
// never leave it), the server's code and message for a duplicate key, and
// operations under a span of the program's own as its children, the
// server's address and port. Stripped
// builds take the driver's offsets from the table, by the exact release in
// their build info.
func TestBuiltinMongo(t *testing.T) {
	uri := startFerretDB(t)
	port := strings.TrimSuffix(uri[strings.LastIndexByte(uri, ':')+1:], "/")
	const yaml = `probes:
  - {symbol: main.lookup, name: lookup, signature: "func(ctx any, orders *Collection) error"}
`
	for _, b := range mongoFixtures(t) {
		t.Run(b.name, func(t *testing.T) {
			tg := startTarget(t, b.path, "TCAGENT_MONGO_URI="+uri)
			tg.run(t, "reset")
			ss := attachWith(t, tg.pid(), yaml, func(c *agent.Config) { c.Builtin = []string{"mongo"} })
			r := ss.s.Builtins()[0]
			if !r.Applied || r.Reason != "" {
				t.Fatalf("mongo set: applied %v, %q", r.Applied, r.Reason)
			}
			module := "go.mongodb.org/mongo-driver"
			if strings.HasPrefix(b.driver, "v2") {
				module += "/v2"
			}
			want := map[bool]string{false: "DWARF", true: "table (" + module + "@" + b.driver + ")"}[b.stripped]
			for f, src := range r.Offsets {
				if src != want {
					t.Errorf("offset of %s from %q, want %q", f, src, want)
				}
			}
			tg.run(t, "crud")
			tg.run(t, "cursor")
			tg.run(t, "dup")
			tg.run(t, "nested")
			tg.run(t, "down")
			spans := ss.stop(t)
			var ops []sdktrace.ReadOnlySpan
			var lookup sdktrace.ReadOnlySpan
			for _, s := range spans {
				if s.Name() == "lookup" {
					lookup = s
					continue
				}
				ops = append(ops, s)
			}
			byStart(ops)
			// RunCommand's server failure: a driver.Error where an
			// operation type runs it, a mongo.CommandError kept in its
			// result from v2.9 on.
			commandError := "driver.Error"
			if strings.HasPrefix(b.driver, "v2.10") {
				commandError = "mongo.CommandError"
			}
			type op struct{ name, text string }
			want2 := []op{
				{"insert orders", `{"insert": "orders", "ordered": "?"}`},
				{"find orders", `{"find": "orders", "filter": {"qty": {"$gt": "?"}}}`},
				{"update orders", `{"update": "orders", "ordered": "?"}`},
				{"aggregate orders", `{"aggregate": "orders", "pipeline": [{"$match": {"qty": {"$gte": "?"}}}], "cursor": {}}`},
				{"count orders", `{"count": "orders"}`},
				{"distinct orders", `{"distinct": "orders", "key": "?", "query": {}}`},
				{"findAndModify orders", `{"findAndModify": "orders", "query": {"_id": "?"}, "update": {"$inc": {"qty": "?"}}}`},
				{"delete orders", `{"delete": "orders", "ordered": "?"}`},
				{"insert orders", `{"insert": "orders", "ordered": "?"}`}, // BulkWrite's inserts
				{"update orders", `{"update": "orders", "ordered": "?"}`}, // and update
				{"ping shop", `{"ping": "?"}`},
				{"nosuchcommand shop", `{"nosuchcommand": "?"}`},
				{"insert orders", `{"insert": "orders", "ordered": "?"}`}, // cursor: five documents
				{"find orders", `{"find": "orders", "batchSize": "?", "filter": {"_id": {"$gte": "?"}}}`},
				{"getMore orders", `{"getMore": "?", "collection": "?", "batchSize": "?"}`},
				{"getMore orders", `{"getMore": "?", "collection": "?", "batchSize": "?"}`},
				{"find orders", `{"find": "orders", "batchSize": "?", "filter": {"_id": {"$gte": "?"}}}`},
				{"killCursors orders", `{"killCursors": "orders", "cursors": ["?"]}`},
				{"insert orders", `{"insert": "orders", "ordered": "?"}`},
				{"insert orders", `{"insert": "orders", "ordered": "?"}`},
				{"find orders", `{"find": "orders", "filter": {"item": "?"}, "limit": "?", "singleBatch": "?"}`},
			}
			// Then the find against a server that is not there.
			if len(ops) != len(want2)+1 {
				t.Fatalf("%d spans, want %d: %s", len(ops), len(want2)+1, spanNames(ops))
			}
			for i, w := range want2 {
				s := ops[i]
				a := attrs(s)
				cmd, coll, _ := strings.Cut(w.name, " ")
				if s.Name() != w.name || s.SpanKind() != trace.SpanKindClient || a["db.system.name"] != "mongodb" || a["db.operation.name"] != cmd ||
					a["db.namespace"] != "shop" || a["server.address"] != "127.0.0.1" || fmt.Sprint(a["server.port"]) != port {
					t.Errorf("span %d: %s %v %v, want %s", i, s.Name(), s.SpanKind(), a, w.name)
				}
				if c, ok := a["db.collection.name"]; coll == "orders" && c != "orders" || coll == "shop" && ok {
					t.Errorf("%s: db.collection.name %v", s.Name(), c)
				}
				if a["db.query.text"] != w.text {
					t.Errorf("%s: db.query.text\n %v, want\n %s", s.Name(), a["db.query.text"], w.text)
				}
				for _, v := range a {
					if str, ok := v.(string); ok && (strings.Contains(str, "4111") || strings.Contains(str, "apple") || strings.Contains(str, "pear")) {
						t.Errorf("%s: a value the program sent is exported: %v", s.Name(), a)
					}
				}
				switch {
				case i == len(want2)-2: // the second insert of _id 2
					if s.Status().Code != codes.Error || !strings.Contains(s.Status().Description, "E11000 duplicate key error") ||
						a["db.response.status_code"] != "11000" || a["error.type"] != "driver.WriteCommandError" {
						t.Errorf("duplicate key: status %v, attributes %v", s.Status(), a)
					}
				case cmd == "nosuchcommand":
					if s.Status().Code != codes.Error || !strings.Contains(s.Status().Description, "nosuchcommand") ||
						a["db.response.status_code"] != "59" || a["error.type"] != commandError {
						t.Errorf("unknown command: status %v, attributes %v", s.Status(), a)
					}
				case s.Status().Code != codes.Unset:
					t.Errorf("%s: status %v", s.Name(), s.Status())
				}
				if i < len(want2)-1 && s.Parent().IsValid() {
					t.Errorf("%s: parent %v, want none", s.Name(), s.Parent())
				}
			}
			if lookup == nil || !isChildOf(ops[len(want2)-1], lookup) {
				t.Errorf("the find under main.lookup is not its child: %s", spanNames(spans))
			}
			// No server: no command sent, the operation's span named by
			// its command alone, the error's Go type its status.
			down := ops[len(ops)-1]
			if a := attrs(down); down.Name() != "find" || a["db.operation.name"] != "find" || a["db.system.name"] != "mongodb" || len(a) != 3 ||
				down.Status().Code != codes.Error || a["error.type"] != "topology.ServerSelectionError" {
				t.Errorf("server down: %s %v %v", down.Name(), down.Status(), a)
			}
		})
	}
}

// TestBuiltinMongoOptions: --sql-query-text full keeps the values of a
// command (as Extended JSON), and a getMore's error (v1.17.2 only: its
// error is read like an operation's, in every release); with the set off (--builtin naming others),
// the driver's operations get no span.
func TestBuiltinMongoOptions(t *testing.T) {
	uri := startFerretDB(t)
	b := mongoFixtures(t)[0]
	tg := startTarget(t, b.path, "TCAGENT_MONGO_URI="+uri)
	tg.run(t, "reset")
	ss := attachWith(t, tg.pid(), "", func(c *agent.Config) {
		c.Builtin = []string{"mongo"}
		c.BuiltinOptions.SQLQueryText = "full"
	})
	tg.run(t, "crud")
	tg.run(t, "cursor")
	tg.run(t, "cursorgone")
	spans := ss.stop(t)
	// The getMore of a cursor the server forgot fails with the server's
	// code and message, left in the cursor.
	if gone := named(spans, "getMore orders"); len(gone) != 3 {
		t.Errorf("%d getMore spans, want 3: %s", len(gone), spanNames(spans))
	} else if s := gone[2]; s.Status().Code != codes.Error || !strings.Contains(s.Status().Description, "cursor") ||
		attrs(s)["error.type"] != "driver.Error" || attrs(s)["db.response.status_code"] != "43" {
		t.Errorf("getMore of a forgotten cursor: %v %v", s.Status(), attrs(s))
	}
	finds := named(spans, "find orders")
	byStart(finds)
	if len(finds) == 0 {
		t.Errorf("no find span: %s", spanNames(spans))
	} else if text := attrs(finds[0])["db.query.text"]; text != `{"find": "orders", "filter": {"qty": {"$gt": 1}}}` {
		t.Errorf("full text: %v", text)
	}

	ss = attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"http", "sql"} })
	tg.run(t, "reset")
	tg.run(t, "crud")
	if spans := ss.stop(t); len(spans) != 0 {
		t.Errorf("spans with the mongo set off: %s", spanNames(spans))
	}
}

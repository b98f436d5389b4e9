package semconv

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

// TestDBSystemFallbacks: db.system.name comes from the statement's driver
// type; when the type is unknown or unread, from the one driver module the
// binary links; when it links none it knows, or drivers of several
// databases, other_sql.
func TestDBSystemFallbacks(t *testing.T) {
	mods := func(paths ...string) *probes.Binary {
		b := &probes.Binary{}
		for _, p := range paths {
			b.Modules = append(b.Modules, probes.Module{Path: p, Version: "v1.0.0"})
		}
		return b
	}
	for _, c := range []struct {
		bin  *probes.Binary
		want string
	}{
		{mods("github.com/lib/pq"), "postgresql"},
		{mods("github.com/lib/pq", "github.com/jackc/pgx/v5"), "postgresql"}, // two drivers, one database
		{mods("modernc.org/sqlite", "golang.org/x/text"), "sqlite"},
		{mods("github.com/go-sql-driver/mysql"), "mysql"},
		{mods("github.com/lib/pq", "modernc.org/sqlite"), "other_sql"}, // which one a statement uses only its driver's type says
		{mods("example.com/unknown/driver"), "other_sql"},
		{mods(), "other_sql"},
	} {
		if got := dbSystem(c.bin); got != c.want {
			t.Errorf("modules %v: %q, want %q", c.bin.Modules, got, c.want)
		}
	}
	for typ, want := range map[string]string{
		"*pq.Driver": "postgresql", "*stdlib.Driver": "postgresql", "*sqlite.Driver": "sqlite", "*sqlite3.SQLiteDriver": "sqlite",
		"*mysql.MySQLDriver": "mysql", "*mssql.Driver": "microsoft.sql_server", "*go_ora.OracleDriver": "oracle.db",
		"*main.myDriver": "", "": "", "noDot": "",
	} {
		if got := systemOf(typ); got != want {
			t.Errorf("systemOf(%q) = %q, want %q", typ, got, want)
		}
	}
	// At the call: the connector's type, through sql.Open's dsnConnector
	// to its driver; an unknown type, or none read, falls back to the
	// modules' answer.
	types := map[uint64]string{1: "*sql.dsnConnector", 2: "*sqlite.Driver", 3: "*main.custom", 4: "*pq.Connector"}
	shape := &sqlShape{system: "other_sql", text: "sanitized", typeName: func(a uint64) string { return types[a] }}
	for _, c := range []struct {
		attrs []attribute.KeyValue
		want  string
	}{
		{[]attribute.KeyValue{attribute.Int64("connector_type", 1), attribute.Int64("driver_type", 2)}, "sqlite"},
		{[]attribute.KeyValue{attribute.Int64("connector_type", 4)}, "postgresql"},
		{[]attribute.KeyValue{attribute.Int64("connector_type", 1), attribute.Int64("driver_type", 3)}, "other_sql"},
		{nil, "other_sql"},
	} {
		if got := shape.dbSystem(raw(c.attrs)); got != c.want {
			t.Errorf("types %v: %q, want %q", c.attrs, got, c.want)
		}
	}
}

// TestSQLQueryTextModes: sanitized replaces literals, full keeps the text,
// none leaves db.query.text out; the operation names the span either way.
func TestSQLQueryTextModes(t *testing.T) {
	const q = "SELECT name FROM users WHERE id = 42 AND note = 'x'"
	for mode, want := range map[string]string{
		"sanitized": "SELECT name FROM users WHERE id = ? AND note = ?",
		"full":      q,
		"none":      "",
	} {
		shape := &sqlShape{system: "postgresql", text: mode, typeName: func(uint64) string { return "" }}
		name, _, attrs := shape.Start(&channel.Payload{Attributes: []attribute.KeyValue{attribute.String("query", q)}})
		got, present := "", false
		for _, a := range attrs {
			if a.Key == "db.query.text" {
				got, present = a.Value.AsString(), true
			}
		}
		if name != "SELECT" || got != want || present != (mode != "none") {
			t.Errorf("%s: span %q, db.query.text %q (present %v), want SELECT, %q", mode, name, got, present, want)
		}
	}
}

// TestRollbackOptsOut: a rollback opens a ROLLBACK span only when its
// transaction was not done at entry; a done one (after Commit, awaitDone's
// after any end, a deferred Rollback after Commit), or one whose tx.done was
// not read, opens none.
func TestRollbackOptsOut(t *testing.T) {
	shape := &sqlShape{system: "sqlite", op: "ROLLBACK", rollback: true, typeName: func(uint64) string { return "" }}
	for _, c := range []struct {
		attrs []attribute.KeyValue
		want  string
	}{
		{[]attribute.KeyValue{attribute.Int64("tx_done", 0)}, "ROLLBACK"},
		{[]attribute.KeyValue{attribute.Int64("tx_done", 1)}, ""},
		{[]attribute.KeyValue{attribute.Bool("tx_done.unreadable", true)}, ""},
		{nil, ""},
	} {
		name, _, attrs := shape.Start(&channel.Payload{Attributes: c.attrs})
		if name != c.want {
			t.Errorf("%v: span %q, want %q", c.attrs, name, c.want)
		}
		if name != "" && !hasAttr(attrs, "db.operation.name", "ROLLBACK") {
			t.Errorf("%v: attributes %v lack db.operation.name=ROLLBACK", c.attrs, attrs)
		}
	}
	// The other transaction calls never read tx.done.
	commit := &sqlShape{system: "sqlite", op: "COMMIT", typeName: func(uint64) string { return "" }}
	if name, _, _ := commit.Start(&channel.Payload{}); name != "COMMIT" {
		t.Errorf("COMMIT without captures: span %q", name)
	}
}

func hasAttr(attrs []attribute.KeyValue, key, value string) bool {
	for _, a := range attrs {
		if string(a.Key) == key && a.Value.AsString() == value {
			return true
		}
	}
	return false
}

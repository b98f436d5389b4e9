package builtin

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

// The methods of database/sql traced, all shaped
// (recv, ctx context.Context, query string, args ...any):
// recv in RAX, ctx in RBX and RCX, the query in RDI and RSI.
// QueryContext returns (*Rows, error): the rows in RAX, the error in RBX
// and RCX; ExecContext returns (Result, error): the result in RAX and RBX,
// the error in RCX and RDI.
var (
	sqlQueries = []string{"database/sql.(*DB).QueryContext", "database/sql.(*Tx).QueryContext", "database/sql.(*Conn).QueryContext"}
	sqlExecs   = []string{"database/sql.(*DB).ExecContext", "database/sql.(*Tx).ExecContext", "database/sql.(*Conn).ExecContext"}
)

const (
	sqlQueryPtr, sqlQueryLen = 3, 4
	rowsClose                = "database/sql.(*Rows).Close"
	rowsCloseInner           = "database/sql.(*Rows).close"
)

// driverPackages maps the package name in a driver's (or connector's) type,
// as the runtime names it ("*pq.Driver"), to db.system.name.
var driverPackages = map[string]string{
	"pq": "postgresql", "pgx": "postgresql", "stdlib": "postgresql", "pgconn": "postgresql",
	"mysql": "mysql", "sqlite": "sqlite", "sqlite3": "sqlite", "mssql": "microsoft.sql_server",
	"go_ora": "oracle.db", "clickhouse": "clickhouse",
}

// systemOf names the database of a driver type name, "" when unknown.
func systemOf(typeName string) string {
	name := strings.TrimLeft(typeName, "*")
	if i := strings.IndexByte(name, '.'); i > 0 {
		return driverPackages[name[:i]]
	}
	return ""
}

// drivers maps driver modules to db.system.name: the fallback when the
// driver's type says nothing.
var drivers = map[string]string{
	"github.com/lib/pq":                      "postgresql",
	"github.com/jackc/pgx/v4":                "postgresql",
	"github.com/jackc/pgx/v5":                "postgresql",
	"github.com/go-sql-driver/mysql":         "mysql",
	"github.com/mattn/go-sqlite3":            "sqlite",
	"modernc.org/sqlite":                     "sqlite",
	"github.com/microsoft/go-mssqldb":        "microsoft.sql_server",
	"github.com/denisenkomd/go-mssqldb":      "microsoft.sql_server",
	"github.com/sijms/go-ora/v2":             "oracle.db",
	"github.com/ClickHouse/clickhouse-go/v2": "clickhouse",
}

// dbSystem names the database from the driver module the binary links, or
// other_sql when it links none it knows, or several.
func dbSystem(b *probes.Binary) string {
	system := ""
	for _, m := range b.Modules {
		s, ok := drivers[m.Path]
		if !ok {
			continue
		}
		if system != "" && system != s {
			return "other_sql"
		}
		system = s
	}
	if system == "" {
		return "other_sql"
	}
	return system
}

func sqlProbes(b *probes.Binary, o *offsets, opts Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	if _, ok := b.Func("database/sql.(*DB).ExecContext"); !ok {
		return nil, nil // database/sql is not used
	}
	// The driver's type needs struct offsets; without them (a stripped
	// binary of a release the table does not know) the statements are still
	// traced, and the driver module names the database.
	var f struct{ connector, driver, txDB, connDB uint16 }
	err := o.mustAll(
		fieldOffset{&f.connector, "database/sql.DB.connector"}, fieldOffset{&f.driver, "database/sql.dsnConnector.driver"},
		fieldOffset{&f.txDB, "database/sql.Tx.db"},
	)
	// *sql.Conn is linked in only when the program uses it: without it,
	// no (*Conn) method is probed.
	hasConn := false
	if err == nil {
		var off int64
		off, hasConn, err = o.get("database/sql.Conn.db")
		f.connDB = uint16(off)
	}
	typed := err == nil
	if !typed {
		o.partial = "db.system.name from the driver module linked in, not from each statement's driver: " + err.Error()
	}
	system := dbSystem(b)
	shape := &sqlShape{system: system, text: opts.SQLQueryText, typeName: b.TypeName}
	// The driver's type names the database: the DB's connector (an
	// interface) and, for sql.Open's dsnConnector, its driver. From a *Tx or
	// *Conn receiver, through its db field first.
	driverTypes := func(p *probes.Probe, symbol string) {
		if !typed {
			return
		}
		var hops []uint16
		switch {
		case strings.Contains(symbol, "(*Tx)"):
			hops = []uint16{f.txDB}
		case strings.Contains(symbol, "(*Conn)"):
			if !hasConn {
				return
			}
			hops = []uint16{f.connDB}
		}
		// itab at connector, its _type at 8; the data word at connector+8
		// points to the dsnConnector, whose driver's itab is at f.driver.
		capture(p, false, "connector_type", field(0, 8, append(append([]uint16{}, hops...), f.connector, 8)...))
		capture(p, false, "driver_type", field(0, 8, append(append([]uint16{}, hops...), f.connector+8, f.driver, 8)...))
	}
	var out []*probes.Probe
	var closer *probes.Probe
	add := func(symbol string, query bool) error {
		p, ok, err := probes.NewProbe(b, symbol, id+uint32(len(out)), rt)
		if err != nil || !ok {
			return err
		}
		p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapString, Reg: sqlQueryPtr, Reg2: sqlQueryLen, MaxLen: bpf.StringSlotSize})
		p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: "query", Type: "string", MaxLen: bpf.StringSlotSize})
		driverTypes(p, symbol)
		errRegs := [2]uint8{2, 3} // ExecContext: (Result, error)
		if query {
			errRegs = [2]uint8{1, 2}
		}
		p.ErrorCapture = len(p.Recipe.Return)
		p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: errRegs[0], Reg2: errRegs[1], MaxLen: bpf.StringSlotSize})
		if query {
			// The query's span lasts until its rows are closed.
			p.HandleCapture = len(p.Recipe.Return)
			p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapReg, Reg: 0})
			p.Spec.Async = &probes.Async{Completion: closer.Spec.Symbol, Handle: "result0"}
			p.Completion = closer
		}
		p.Spec.Name, p.Spec.Kind, p.Shape = "db.query", "client", shape
		out = append(out, p)
		return nil
	}
	for _, s := range sqlExecs {
		if err := add(s, false); err != nil {
			return nil, err
		}
	}
	// Transactions: BeginTx(ctx, opts) (*Tx, error) on *DB and *Conn (the
	// error in RBX and RCX), Commit() error (in RAX and RBX).
	for _, t := range []struct {
		symbol, op string
		errRegs    []uint8
	}{
		{"database/sql.(*DB).BeginTx", "BEGIN", []uint8{1, 2}},
		{"database/sql.(*Conn).BeginTx", "BEGIN", []uint8{1, 2}},
		{"database/sql.(*Tx).Commit", "COMMIT", []uint8{0, 1}},
	} {
		p, ok, err := probes.NewProbe(b, t.symbol, id+uint32(len(out)), rt)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		p.ErrorCapture = 0
		p.Recipe.Return = []bpf.Capture{{Kind: bpf.CapError, Reg: t.errRegs[0], Reg2: t.errRegs[1], MaxLen: bpf.StringSlotSize}}
		driverTypes(p, t.symbol)
		p.Spec.Name, p.Spec.Kind, p.Shape = "db."+strings.ToLower(t.op), "client", &sqlShape{system: system, op: t.op, typeName: b.TypeName}
		out = append(out, p)
	}
	p, err := rollbackProbe(b, o, id+uint32(len(out)), rt, &sqlShape{system: system, op: "ROLLBACK", typeName: b.TypeName, rollback: true})
	if err != nil {
		return nil, err
	}
	if p != nil {
		driverTypes(p, sqlRollback)
		out = append(out, p)
	}
	// (*Rows).Close(rs *Rows) error: the receiver in RAX, the error in RAX
	// and RBX. In Go 1.19 and 1.20 Close is only `return rs.close(nil)`,
	// which the compiler inlines into its callers (Row.Scan, the program's
	// own code): there the call to follow is (*Rows).close(err error) error,
	// which every way of closing goes through, with the same registers.
	closeSym := rowsClose
	if _, ok := b.Func("database/sql.(*Rows).closemuRUnlockIfHeldByScan"); !ok {
		if _, ok := b.Func(rowsCloseInner); ok {
			closeSym = rowsCloseInner
		}
	}
	c, ok, err := probes.NewProbe(b, closeSym, 0, rt)
	if err != nil {
		return nil, err
	}
	if ok {
		c.IsCompletion = true
		c.ReceiverCapture = 0
		c.Recipe.Entry = []bpf.Capture{{Kind: bpf.CapReg, Reg: 0}}
		c.ErrorCapture = 0
		c.Recipe.Return = []bpf.Capture{{Kind: bpf.CapError, Reg: 0, Reg2: 1, MaxLen: bpf.StringSlotSize}}
		closer = c
		for _, s := range sqlQueries {
			if err := add(s, true); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

var sqlOperations = map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "CREATE": true,
	"DROP": true, "ALTER": true, "BEGIN": true, "COMMIT": true, "ROLLBACK": true, "WITH": true, "MERGE": true,
	"TRUNCATE": true, "CALL": true, "EXPLAIN": true, "GRANT": true, "REVOKE": true, "SET": true, "SHOW": true, "COPY": true}

// sqlRollback is the function every rollback of a transaction runs.
const sqlRollback = "database/sql.(*Tx).rollback"

// rollbackProbe probes (*Tx).rollback(discardConn bool) error, the receiver
// in RAX, nil when the binary has none or tx.done's offset is unknown (the
// reason then goes in the set's note). (*Tx).Rollback is a one-line wrapper
// of it that the compiler inlines into every caller, deferred calls too: its
// out-of-line copy never runs. rollback also runs for the rollbacks that do
// nothing: awaitDone's, the goroutine BeginTx starts, which rolls back when
// the transaction's context ends, as Commit and Rollback make it; and a
// `defer tx.Rollback()` after a Commit. Each returns sql.ErrTxDone at once,
// tx.done being already set: the entry reads tx.done, and the shaper opens
// no span for a done transaction. awaitDone's rollback of a transaction
// still open when its context ends (cancelled, timed out) is a real one:
// its span is a child of the BEGIN span, which awaitDone's goroutine
// inherits from BeginTx.
//
// The error is not read: awaitDone's rollback returns driver.ErrBadConn,
// whatever the driver answered, whenever it discards the connection (a
// driver that cannot reset sessions), which is no failure; and whether the
// call was awaitDone's is known at entry (discardConn), not where the error
// is read.
func rollbackProbe(b *probes.Binary, o *offsets, id uint32, rt probes.Runtime, shape *sqlShape) (*probes.Probe, error) {
	if _, ok := b.Func(sqlRollback); !ok {
		return nil, nil
	}
	done, err := o.must("database/sql.Tx.done")
	if err != nil {
		note := "no ROLLBACK spans (whether a rollback does anything is read from database/sql.Tx.done): " + err.Error()
		if o.partial != "" {
			note = o.partial + "; " + note
		}
		o.partial = note
		return nil, nil
	}
	p, ok, err := probes.NewProbe(b, sqlRollback, id, rt)
	if err != nil || !ok {
		return nil, err
	}
	// done is an atomic.Bool (an int32 before Go 1.20): a uint32 at its
	// offset, 0 or 1.
	capture(p, false, "tx_done", field(0, 4, done))
	p.Spec.Name, p.Spec.Kind, p.Shape = "db.rollback", "client", shape
	return p, nil
}

// sqlShape shapes statements (op empty: named by the statement) and
// transaction calls (op set).
type sqlShape struct {
	system   string // from the modules, when the driver's type says nothing
	op       string
	text     string // sanitized, full or none
	typeName func(uint64) string
	// rollback: the call opens no span unless its transaction was not done
	// yet at entry (see rollbackProbe).
	rollback bool
}

// dbSystem names the database from the driver's type read at the call.
func (s *sqlShape) dbSystem(r raw) string {
	connector, ok := r.int("connector_type")
	if !ok {
		return s.system
	}
	name := s.typeName(uint64(connector))
	if strings.HasSuffix(name, ".dsnConnector") {
		driver, _ := r.int("driver_type")
		name = s.typeName(uint64(driver))
	}
	if sys := systemOf(name); sys != "" {
		return sys
	}
	return s.system
}

func (s *sqlShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	if s.rollback && !rollsBack(raw(p.Attributes)) {
		return "", 0, nil
	}
	system := s.dbSystem(raw(p.Attributes))
	attrs := []attribute.KeyValue{attribute.String("db.system.name", system)}
	if s.op != "" {
		return s.op, trace.SpanKindClient, append(attrs, attribute.String("db.operation.name", s.op))
	}
	if u, ok := raw(p.Attributes).unreadable("query", "db.query.text"); ok {
		return system, trace.SpanKindClient, append(attrs, u)
	}
	q, _ := raw(p.Attributes).str("query")
	switch s.text {
	case "sanitized":
		attrs = append(attrs, attribute.String("db.query.text", SanitizeSQL(q)))
	case "full":
		attrs = append(attrs, attribute.String("db.query.text", q))
	}
	name := system
	if f := strings.Fields(q); len(f) > 0 {
		if op := strings.ToUpper(f[0]); sqlOperations[op] {
			attrs = append(attrs, attribute.String("db.operation.name", op))
			name = op
		}
	}
	return name, trace.SpanKindClient, attrs
}

// rollsBack says whether a rollback will roll its transaction back: tx.done
// read as false at entry. A done transaction's rollback, or one whose
// tx.done could not be read, is no span: a ROLLBACK that did nothing would
// be wrong data. (Two rollbacks of one transaction that race, the program's
// and awaitDone's as its context ends, may both read false at entry: both
// get a span, though only the one that sets tx.done first rolls back.)
func rollsBack(r raw) bool {
	done, ok := r.int("tx_done")
	return ok && done == 0
}

func (s *sqlShape) End(span trace.Span, p *channel.Payload) {
	if e, ok := p.Err().(*channel.Error); ok && p.HasError() {
		span.SetAttributes(attribute.String("error.type", e.Type))
	}
}
